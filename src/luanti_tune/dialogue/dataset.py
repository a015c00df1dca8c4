"""``chat.msg`` events addressed to NPCs + the context at that moment -> chat-format SFT examples.

A player's ``chat.msg`` with ``payload.to`` naming an NPC opens an exchange; the NPC's next
``chat.msg`` to that player (actor kind ``agent`` or ``mob``) closes it and is the target reply.
The player's context is taken at the moment of the player's message (all earlier events in
stored order). Messages the NPC never answered are counted and skipped.

Output directory: ``train.jsonl``, ``heldout.jsonl`` (split by a seeded hash of the exchange, so
an exchange always lands on the same side) and ``manifest.json`` (``luanti.dataset/1``: event id
range, filters, counts, seed, sha256 of every file).

Play styles: with a style book (``luanti-tune analyze players``) every labelled player's context
carries ``Play style: <label>.``; ``style=[...]`` keeps only the conversations of players with
those labels (per-style adaptation), recorded in the manifest's ``filters``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from luanti_tune.dialogue.context import ContextTracker, PlayerContext, player_styles, system_prompt
from luanti_tune.dialogue.personas import Persona, persona_for

log = logging.getLogger(__name__)

DATASET_SCHEMA = "luanti.dataset/1"
KIND = "dialogue-sft"
NPC_KINDS = ("agent", "mob")
#: Event types the builder reads (chat plus everything the context is made of).
CONTEXT_TYPES = (
    "chat.msg",
    "player.join",
    "player.move",
    "player.hp",
    "player.die",
    "player.punch",
    "node.dig",
    "node.place",
    "craft",
    "inventory.action",
)


def grounding_facts(context: PlayerContext, reply: str) -> dict[str, str]:
    """Context facts (name -> words) that ``reply`` mentions: what a grounded reply should use."""
    low = reply.lower()
    return {k: v for k, v in context.facts().items() if v.lower() in low}


@dataclass
class BuildStats:
    events: int = 0
    player_messages: int = 0
    unanswered: int = 0
    other_players: int = 0
    examples: int = 0
    first_id: int | None = None
    last_id: int | None = None
    npcs: dict[str, int] = field(default_factory=dict)


def build_examples(
    events: Iterable[Mapping[str, Any]],
    *,
    npcs: Iterable[str] | None = None,
    personas: dict[str, Persona] | None = None,
    stats: BuildStats | None = None,
    styles: Mapping[str, str] | None = None,
    players: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Pair player->NPC messages with the NPC's reply; each example carries its context.

    ``npcs``: names that count as NPCs; by default any name that answers as an ``agent``/``mob``.
    ``styles``: player -> play-style label put into the context. ``players``: keep only messages
    of these players (the others are counted in ``other_players``; their events still feed context).
    """
    st = stats if stats is not None else BuildStats()
    npc_filter = set(npcs) if npcs is not None else None
    player_filter = set(players) if players is not None else None
    tracker = ContextTracker(styles)
    pending: dict[tuple[str, str], dict[str, Any]] = {}
    examples: list[dict[str, Any]] = []
    for ev in events:
        st.events += 1
        eid = ev.get("_id")
        if isinstance(eid, int):
            st.first_id = eid if st.first_id is None else st.first_id
            st.last_id = eid
        tracker.update(ev)
        if ev.get("type") != "chat.msg":
            continue
        actor = ev.get("actor") or {}
        payload = ev.get("payload") or {}
        to = payload.get("to")
        message = str(payload.get("message", "")).strip()
        if not to or not message:
            continue
        if actor.get("kind") == "player":
            if npc_filter is not None and to not in npc_filter:
                continue
            if player_filter is not None and str(actor.get("name")) not in player_filter:
                st.other_players += 1
                continue
            st.player_messages += 1
            key = (str(actor.get("name")), str(to))
            if key in pending:
                st.unanswered += 1
            pending[key] = {
                "message": message,
                "context": tracker.context(key[0]),
                "ref": f"{ev.get('source')}:{ev.get('seq')}",
            }
        elif actor.get("kind") in NPC_KINDS:
            npc = str(actor.get("name"))
            if npc_filter is not None and npc not in npc_filter:
                continue
            opened = pending.pop((str(to), npc), None)
            if opened is None:
                continue
            ctx: PlayerContext = opened["context"]
            persona = persona_for(npc, personas)
            examples.append(
                {
                    "id": opened["ref"],
                    "npc": npc,
                    "player": ctx.player,
                    "messages": [
                        {"role": "system", "content": system_prompt(persona, ctx)},
                        {"role": "user", "content": opened["message"]},
                        {"role": "assistant", "content": message},
                    ],
                    "context": ctx.to_json(),
                    "facts": grounding_facts(ctx, message),
                }
            )
            st.npcs[npc] = st.npcs.get(npc, 0) + 1
    st.unanswered += len(pending)
    st.examples = len(examples)
    return examples


def is_heldout(example_id: str, seed: int, fraction: float) -> bool:
    h = hashlib.sha256(f"{seed}:{example_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


def split(
    examples: list[dict[str, Any]], *, seed: int = 0, heldout_fraction: float = 0.2
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    train: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    for ex in examples:
        (held if is_heldout(ex["id"], seed, heldout_fraction) else train).append(ex)
    return train, held


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_dataset(
    out_dir: Path,
    examples: list[dict[str, Any]],
    *,
    seed: int = 0,
    heldout_fraction: float = 0.2,
    stats: BuildStats | None = None,
    source: Mapping[str, Any] | None = None,
    filters: Mapping[str, Any] | None = None,
    style_book: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``train.jsonl``/``heldout.jsonl``/``manifest.json`` atomically; return the manifest.

    ``filters``: extra filters recorded next to the event types (e.g. ``styles``/``players``);
    ``style_book``: where the play-style labels in the contexts came from.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, held = split(examples, seed=seed, heldout_fraction=heldout_fraction)
    files: dict[str, dict[str, Any]] = {}
    for name, rows in (("train.jsonl", train), ("heldout.jsonl", held)):
        tmp = out_dir / f".{name}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, sort_keys=True) + "\n")
        os.replace(tmp, out_dir / name)
        files[name] = {"sha256": _sha256(out_dir / name), "rows": len(rows)}
    st = stats or BuildStats(examples=len(examples))
    manifest: dict[str, Any] = {
        "schema": DATASET_SCHEMA,
        "kind": KIND,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seed": seed,
        "heldout_fraction": heldout_fraction,
        "event_range": {"first_id": st.first_id, "last_id": st.last_id},
        "filters": {"types": list(CONTEXT_TYPES), "npc_actor_kinds": list(NPC_KINDS), **dict(filters or {})},
        "source": dict(source or {}),
        "counts": {
            "events": st.events,
            "player_messages": st.player_messages,
            "unanswered": st.unanswered,
            "examples": len(examples),
            "train": len(train),
            "heldout": len(held),
            "by_npc": dict(st.npcs),
        },
        "files": files,
    }
    if style_book is not None:
        manifest["style_book"] = dict(style_book)
    if st.other_players:
        manifest["counts"]["other_players_messages"] = st.other_players
    tmp = out_dir / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / "manifest.json")
    log.info("dialogue dataset %s: %d train, %d held-out examples", out_dir, len(train), len(held))
    return manifest


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_dataset(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """``(train, heldout, manifest)`` of a dataset directory, checking the file hashes."""
    path = Path(path)
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    for name, meta in manifest.get("files", {}).items():
        if _sha256(path / name) != meta.get("sha256"):
            raise ValueError(f"dataset {path}: {name} does not match its manifest sha256")
    return read_jsonl(path / "train.jsonl"), read_jsonl(path / "heldout.jsonl"), manifest


def _redact(url: str) -> str:
    """A store URL without its password (``postgresql://user:secret@host`` -> ``postgresql://user:***@host``)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def build_from_store(
    store: Any,
    out_dir: Path,
    *,
    after_id: int = 0,
    until_id: int | None = None,
    seed: int = 0,
    heldout_fraction: float = 0.2,
    styles_file: Path | None = None,
    style: Sequence[str] = (),
) -> dict[str, Any]:
    """Build a dataset from a :class:`~luanti_tune.store.base.Store` event range.

    ``styles_file``: the style book (``<data_dir>/analysis/styles.json``); when it exists, the
    contexts carry the players' play-style labels. ``style``: keep only conversations of players
    with these labels (:func:`~luanti_tune.analysis.players.players_of_styles`; a
    :class:`~luanti_tune.errors.ConfigError` naming an unknown style, before anything is written).
    """
    from luanti_tune.errors import ConfigError
    from luanti_tune.store.base import EventQuery

    players: list[str] | None = None
    filters: dict[str, Any] = {}
    if style:
        if styles_file is None:
            raise ConfigError("style: per-style datasets need the style book (styles_file)")
        from luanti_tune.analysis.players import players_of_styles

        players = players_of_styles(list(style), path=Path(styles_file))
        filters = {"styles": sorted(set(style)), "players": players}
    labels = player_styles(styles_file)
    until = until_id if until_id is not None else store.max_id()
    query = EventQuery(types=CONTEXT_TYPES, after_id=after_id, until_id=until)
    stats = BuildStats()
    examples = build_examples(store.iter_events(query), stats=stats, styles=labels, players=players)
    if players is not None and not examples:
        raise ConfigError(f"style: no answered NPC conversations of players of style {', '.join(style)}")
    return write_dataset(
        out_dir,
        examples,
        seed=seed,
        heldout_fraction=heldout_fraction,
        stats=stats,
        source={"store": _redact(str(getattr(store, "url", ""))), "after_id": after_id, "until_id": until},
        filters=filters,
        style_book={"path": str(styles_file), "players": len(labels)} if labels else None,
    )
