"""Model registry at ``Settings.resolved_model_path`` (docs/design.md "Models and registry").

Layout (one directory per family, one per version)::

    <root>/<family>/v0001/weights.safetensors   # torch state dict (safetensors, never pickle)
    <root>/<family>/v0001/<any other files>      # e.g. LoRA adapter files of family "dialogue"
    <root>/<family>/v0001/manifest.json          # see below
    <root>/<family>/aliases.json                 # {"champion", "candidate", "previous": [...], "generation"}
    <root>/<family>/history.jsonl                # save / promote / reject / rollback / skip / fail rows

``manifest.json`` (schema ``luanti.model/1``): ``family, version, name, parent, created,
architecture`` (everything :func:`luanti_tune.policies.families.get_family` needs to rebuild the
module), ``dataset`` (the dataset manifest it was trained on), ``metrics``, ``gate`` (verdict and
figures), ``training`` (hyper-parameters, seed, steps) and ``files`` (``{name: {"sha256", "bytes"}}``
for every file of the version). Versions are written to a temp dir and renamed into place;
aliases are rewritten with temp file + ``os.replace`` under an flock, so readers never see a
half-written state.

API (stable; used by trainers, the worker, the inference engine and the CLI)::

    reg = Registry(settings.resolved_model_path, keep=20)
    v = reg.save("pursuit", module=net, architecture={...}, parent="v0003",
                 dataset=ds_manifest, metrics={...}, gate=None)      # -> "v0004", alias candidate
    reg.save("dialogue", files={"adapter_model.safetensors": path, ...}, architecture={...})
    m = reg.load("pursuit", "champion")    # LoadedModel; verifies sha256 -> ModelError on tamper
    m.module, m.adapter, m.manifest, m.name, m.version
    m.forward({"hist": ..., "vel": ...}) -> {"mean": ..., "log_std": ...}
    m.decide(observations, memory) -> list[Decision]
    reg.promote("pursuit", v, reason="gate passed")   # refuses a failed gate unless force=True
    reg.rollback("pursuit", reason="live error up 40%")  # previous champion, instantly
    reg.champion_version("pursuit"), reg.generation("pursuit")   # cheap polling for hot-swap
    reg.history("pursuit"), reg.info("pursuit"), reg.versions("pursuit"), reg.aliases("pursuit")
    reg.record("pursuit", "skip", reason="dataset too small (12 < 200 windows)")
    reg.update_manifest("pursuit", v, gate={...}); reg.prune("pursuit")

``ref`` arguments accept ``champion``, ``candidate``, ``previous``, ``latest`` or a version id.
"""

from luanti_tune.registry.registry import MANIFEST, MANIFEST_SCHEMA, LoadedModel, Registry, VersionInfo, sha256_file

__all__ = ["MANIFEST", "MANIFEST_SCHEMA", "LoadedModel", "Registry", "VersionInfo", "sha256_file"]
