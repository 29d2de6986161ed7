"""What each model class is (its role) and how each role is drawn.

Nothing downstream of the model uses class indices: overlay colours and alert rules ask for
roles. Roles come from the class names, overridable in the config:

    class_roles(("grasper", "hook", "cystic_artery", "liver"), {"liver": "other"})
    -> ("instrument", "instrument", "vessel", "other")
"""
from __future__ import annotations

ROLES = ("instrument", "vessel", "other")

# Words in a class name that give its role (first match wins, instrument words first).
ROLE_WORDS = {
    "instrument": ("instrument", "tool", "grasper", "hook", "clipper", "scissors", "irrigator", "forceps",
                   "needle", "trocar", "bipolar", "specimen_bag", "stapler", "suction"),
    "vessel": ("vessel", "artery", "vein", "arterial", "venous", "blood"),
}

# Colour table (BGR), documented in docs/protocol.md and README: contrasts with red tissue.
ROLE_COLOURS = {
    "instrument": (255, 170, 0),  # azure blue
    "vessel": (0, 220, 255),  # yellow
    "other": (180, 180, 180),  # grey
}
ADVISORY_COLOUR = (0, 160, 255)  # amber: a "possible vessel" (advisory evidence tier), never red
PRIORITY_COLOURS = {"high": (0, 0, 230), "medium": (0, 215, 255), "low": (200, 200, 200)}


def role_of(name: str) -> str:
    """Role of a class name by the words it contains; ``other`` when none match."""
    lowered = name.lower()
    for role, words in ROLE_WORDS.items():
        if any(word in lowered for word in words):
            return role
    return "other"


def class_roles(names: tuple[str, ...], overrides: dict[str, str] | None = None) -> tuple[str, ...]:
    """Role of each class, ``overrides`` (name -> role) taking precedence."""
    overrides = overrides or {}
    for name, role in overrides.items():
        if role not in ROLES:
            raise ValueError(f"role of class {name!r} must be one of {', '.join(ROLES)}, not {role!r}")
    return tuple(overrides.get(name, role_of(name)) for name in names)
