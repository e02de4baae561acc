"""User search spaces from YAML, turned into the same define-by-run function as the presets.

    # my_space.yaml
    params:
      method: {choices: [mixup, icm]}
      alpha:  {low: 0.2, high: 2.0, log: true}
      k:      {low: 2, high: 200, log: true, when: {method: icm}}   # only suggested for icm
      lr:     {low: 1.0e-4, high: 1.0e-2, log: true}
    fixed:
      loss: scl_nl

A parameter is categorical (`choices`), integer (int `low`/`high`, or `type: int`) or float.
`when` makes it conditional on earlier parameters (a value or a list of values). Every
mistake is a SpaceError naming the file and the parameter, raised before any trial runs.
Reading the file is the tuner's job (`tuner.search.space.load_space_file`): this package only
describes spaces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:  # optuna is only needed when a trial calls the space
    import optuna

from .presets import Space

SPEC_KEYS = {"choices", "low", "high", "log", "step", "type", "when"}


class SpaceError(ValueError):
    """A search-space file mixtune cannot use; the message is one line."""


def _param(name: str, spec: Any, where: str, earlier: list[str]) -> Callable[[optuna.Trial, dict], None]:
    if not isinstance(spec, dict):
        raise SpaceError(f"{where}: parameter {name!r} must be a mapping such as {{low: 0.1, high: 1.0}}")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise SpaceError(f"{where}: parameter {name!r} has unknown key(s) {', '.join(sorted(unknown))}")
    when = spec.get("when") or {}
    if not isinstance(when, dict):
        raise SpaceError(f"{where}: parameter {name!r}: 'when' must map earlier parameters to values")
    for dep in when:
        if dep not in earlier:
            raise SpaceError(f"{where}: parameter {name!r} depends on {dep!r}, which is not an earlier parameter")
    conditions = {d: (v if isinstance(v, list) else [v]) for d, v in when.items()}

    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: parameter {name!r}: choices must be a non-empty list")
        if len({repr(c) for c in choices}) != len(choices):
            raise SpaceError(f"{where}: parameter {name!r}: choices repeat a value")

        def suggest(trial: optuna.Trial, values: dict) -> None:
            values[name] = trial.suggest_categorical(name, choices)

    else:
        if "low" not in spec or "high" not in spec:
            raise SpaceError(f"{where}: parameter {name!r} needs choices, or low and high")
        low, high = spec["low"], spec["high"]
        for bound in (low, high):
            if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                raise SpaceError(f"{where}: parameter {name!r}: low and high must be numbers, got {bound!r}")
        kind = spec.get("type") or ("int" if isinstance(low, int) and isinstance(high, int) else "float")
        if kind not in ("int", "float"):
            raise SpaceError(f"{where}: parameter {name!r}: type must be int or float, not {kind!r}")
        if not low < high:
            raise SpaceError(f"{where}: parameter {name!r} has an empty range [{low}, {high}]")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise SpaceError(f"{where}: parameter {name!r}: a log range needs low > 0, got {low}")
        step = spec.get("step")
        if step is not None and log:
            raise SpaceError(f"{where}: parameter {name!r}: step and log cannot be combined")
        if kind == "int":
            if int(low) != low or int(high) != high:
                raise SpaceError(f"{where}: parameter {name!r}: an int range needs integer bounds")
            low, high, istep = int(low), int(high), int(step or 1)

            def suggest(trial: optuna.Trial, values: dict) -> None:
                values[name] = trial.suggest_int(name, low, high, step=istep, log=log)

        else:

            def suggest(trial: optuna.Trial, values: dict) -> None:
                values[name] = trial.suggest_float(name, float(low), float(high), step=step, log=log)

    def maybe(trial: optuna.Trial, values: dict) -> None:
        if all(values.get(d) in allowed for d, allowed in conditions.items()):
            suggest(trial, values)

    return maybe


def space_from_dict(doc: Any, where: str = "space", allowed: Iterable[str] | None = None) -> Space:
    """Validate a parsed space document and build its define-by-run function."""
    if not isinstance(doc, dict):
        raise SpaceError(f"{where}: a space file is a mapping with 'params' (and optionally 'fixed')")
    extra = set(doc) - {"params", "fixed"}
    if extra:
        raise SpaceError(f"{where}: unknown top-level key(s) {', '.join(sorted(extra))}; use params and fixed")
    params = doc.get("params") or {}
    fixed = doc.get("fixed") or {}
    if not isinstance(params, dict) or not isinstance(fixed, dict):
        raise SpaceError(f"{where}: 'params' and 'fixed' must be mappings")
    if not params:
        raise SpaceError(f"{where}: 'params' is empty: nothing to search")
    allowed_names = list(allowed) if allowed is not None else None
    allowed_set = set(allowed_names) if allowed_names is not None else None
    for name in [*params, *fixed]:
        if allowed_set is not None and name not in allowed_set:
            import difflib

            close = difflib.get_close_matches(str(name), sorted(allowed_set), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpaceError(f"{where}: {name!r} is not a TrainConfig field{hint}; valid names: "
                             f"{', '.join(allowed_names or [])}")
    both = set(params) & set(fixed)
    if both:
        raise SpaceError(f"{where}: {', '.join(sorted(both))} both searched and fixed")
    return YamlSpace(doc, where)


class YamlSpace:
    """The define-by-run function of a validated space document.

    It keeps the document and rebuilds its steps after unpickling: Ray snapshots the
    searcher with pickle, and the steps are closures.
    """

    def __init__(self, doc: dict[str, Any], where: str):
        self.doc, self.where = doc, where
        self._build()

    def _build(self) -> None:
        self._steps, earlier = [], []
        for name, spec in (self.doc.get("params") or {}).items():
            self._steps.append(_param(str(name), spec, self.where, earlier))
            earlier.append(name)
        self._fixed = dict(self.doc.get("fixed") or {})

    def __getstate__(self) -> dict[str, Any]:
        return {"doc": self.doc, "where": self.where}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.doc, self.where = state["doc"], state["where"]
        self._build()

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for step in self._steps:
            step(trial, values)
        return dict(self._fixed)
