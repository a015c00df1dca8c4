"""NPC personas: who an NPC is, in one line of its system prompt."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Persona:
    name: str
    role: str
    style: str

    def describe(self) -> str:
        return f"You are {self.name}, {self.role}. {self.style}"


DEFAULT_PERSONAS: dict[str, Persona] = {
    p.name: p
    for p in (
        Persona("smith", "the village blacksmith", "You are gruff but helpful and talk about tools and ore."),
        Persona("mira", "the herbalist at the forest edge", "You are kind and worry about the health of travellers."),
        Persona("guard", "the guard at the village gate", "You are watchful and warn about danger and the night."),
    )
}

GENERIC_PERSONA = Persona("npc", "a villager", "You answer briefly.")


def persona_for(npc: str, personas: dict[str, Persona] | None = None) -> Persona:
    """The persona of ``npc``; unknown NPCs get a generic villager persona under their own name."""
    table = DEFAULT_PERSONAS if personas is None else personas
    found = table.get(npc)
    if found is not None:
        return found
    return Persona(npc, GENERIC_PERSONA.role, GENERIC_PERSONA.style)
