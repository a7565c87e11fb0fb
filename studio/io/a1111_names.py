"""AUTOMATIC1111's sampler and "Schedule type" names ↔ ours (Qt- and torch-free; the one table both ways; the SD
family sees it as `studio.families.stable_diffusion.a1111_names`).

A1111 (1.9 and later) writes "Sampler: DPM++ 2M, Schedule type: Karras"; before 1.9 the schedule was part of the
sampler's name ("DPM++ 2M Karras"). ComfyUI names its samplers "dpmpp_2m" with a separate scheduler "karras"; older
tools "k_dpmpp_2m". Our sampler names are the app's (`studio.nets.samplers.SAMPLERS`: ddpm, ddim, euler, dpmpp, and
euler_a for Euler ancestral); a name in this table that a model does not offer is simply not matched.

A1111's "Automatic" schedule is each sampler's own default (Karras for the DPM++ 2M family since 1.9), so the
writer names the schedule itself: "Karras", or "Uniform" (the model's own timesteps, evenly spaced).
"""

from __future__ import annotations

# our sampler → A1111's sampler label (DDPM has none in A1111: it is written as "DDPM" and A1111 reads its default)
A1111_SAMPLERS = {
    "ddim": "DDIM",
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp": "DPM++ 2M",
    "ddpm": "DDPM",
}
KARRAS, UNIFORM, AUTOMATIC = "Karras", "Uniform", "Automatic"
# samplers that A1111 runs on its timestep list (no schedule type applies)
TIMESTEP_SAMPLERS = ("ddim", "ddpm")

# other tools' names of the same methods, lower-cased: (our sampler, karras or None when the name does not say)
_ALIASES: dict[str, tuple[str, bool | None]] = {
    "k_euler": ("euler", None), "euler": ("euler", None),
    "k_euler_a": ("euler_a", None), "k_euler_ancestral": ("euler_a", None), "euler_ancestral": ("euler_a", None),
    "euler a": ("euler_a", None),
    "dpm++ 2m": ("dpmpp", None), "dpmpp_2m": ("dpmpp", None), "k_dpmpp_2m": ("dpmpp", None),
    "dpm++ 2m karras": ("dpmpp", True), "dpmpp_2m_karras": ("dpmpp", True),
    "ddim": ("ddim", None), "ddpm": ("ddpm", None),
    "dpmsolvermultistepscheduler": ("dpmpp", None), "dpmsolvermultistep": ("dpmpp", None),  # diffusers / InvokeAI
    "dpmpp_2m_k": ("dpmpp", True), "euler_k": ("euler", True),  # InvokeAI's Karras variants
    "eulerdiscretescheduler": ("euler", None), "ddimscheduler": ("ddim", None),
    "eulerancestraldiscretescheduler": ("euler_a", None),
}
_SCHEDULES = {"karras": True, "uniform": False, "normal": False, "automatic": None, "": None}


def a1111_sampler(sampler: str, karras: bool = False) -> tuple[str, str | None]:
    """(A1111's "Sampler", its "Schedule type" or None) for our `sampler` and Karras flag; an unknown sampler keeps
    its own name."""
    name = A1111_SAMPLERS.get(sampler, sampler)
    if sampler in TIMESTEP_SAMPLERS:
        return name, None
    return name, KARRAS if karras else UNIFORM


def a1111_name(sampler: str, karras: bool = False) -> str:
    """A1111's one-string name of before 1.9 ("DPM++ 2M Karras", "Euler a")."""
    name, schedule = a1111_sampler(sampler, karras)
    return f"{name} {KARRAS}" if schedule == KARRAS else name


def our_sampler(name: str, schedule: str | None = None) -> tuple[str, bool | None] | None:
    """(our sampler, karras) for another tool's sampler `name` and optional schedule type / ComfyUI scheduler;
    karras is None when neither says (the model's own schedule). None when the method is not one of ours."""
    key = " ".join(name.strip().lower().split())
    found = _ALIASES.get(key)
    if found is None and key.endswith(" karras") and key[:-7] in _ALIASES:  # "Euler Karras", "DDIM Karras"?
        found = (_ALIASES[key[:-7]][0], True)
    if found is None:
        ours = next((k for k, v in A1111_SAMPLERS.items() if v.lower() == key), None)
        if ours is None:
            return None
        found = (ours, None)
    sampler, karras = found
    if schedule is not None and karras is None:
        karras = _SCHEDULES.get(schedule.strip().lower(), None)
    return sampler, karras


def known_schedule(schedule: str) -> bool:
    """Whether a schedule type / ComfyUI scheduler is one we follow (Karras, Uniform/Normal, Automatic)."""
    return schedule.strip().lower() in _SCHEDULES
