"""Parse .dig files (YAML with Digdag's keys) into a task tree, and validate the subset this project uses.

The subset is what both a Digdag server and our local runner (batch/digdag/local.py) run the same way:

* tasks are ``+name`` keys, run top to bottom; ``_parallel: true | {limit: N}`` runs a group's children in parallel
* operators ``sh>``, ``echo>``, ``call>`` (another .dig file) and ``fail>``
* ``_export`` (scoped variables), ``_env`` (sh> environment, may hold ``${secret:key}``), ``_error`` (a task run when
  the task or a child fails; it sees ``${error.message}``), ``_retry`` (``N`` or ``{limit, interval, interval_type,
  max_interval}``)
* top level only: ``timezone``, ``schedule`` (daily>, hourly>, weekly>, monthly>, minutes_interval>, cron> plus
  options) and ``sla`` (``time`` or ``duration``, ``+tasks``, ``fail``, ``alert``)
* ``${name}`` and ``${a.b}`` references; ``${secret:key}`` only inside ``_env``

Anything else (a JavaScript expression such as ``${moment(session_time)...}``, ``!include``, ``py>``, ``http>``,
``_background``) is rejected with the file, the task and a hint, so a workflow that passes ``reco digdag check``
behaves the same here and on the server.
"""

from __future__ import annotations

import calendar
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from batch.errors import ConfigError

SUPPORTED_OPERATORS = ("sh", "echo", "call", "fail")
# Digdag operators that exist but that the local runner does not implement: a hint instead of "unknown".
KNOWN_DIGDAG_OPERATORS = {
    "py",
    "rb",
    "require",
    "http",
    "http_call",
    "mail",
    "loop",
    "for_each",
    "for_range",
    "if",
    "wait",
    "td",
    "td_run",
    "td_ddl",
    "td_load",
    "td_for_each",
    "td_wait",
    "td_wait_table",
    "td_table_export",
    "td_result_export",
    "pg",
    "redshift",
    "redshift_load",
    "redshift_unload",
    "s3_wait",
    "gcs_wait",
    "bq",
    "bq_ddl",
    "bq_extract",
    "bq_load",
    "emr",
    "param_get",
    "param_set",
    "embulk",
}
TASK_KEYS = {"_export", "_env", "_error", "_retry", "_parallel"}
TOP_LEVEL_KEYS = {"timezone", "schedule", "sla"}
UNSUPPORTED_KEYS = {
    "_background": "run the tasks in a `_parallel: true` group instead",
    "_check": "add a following +task that checks the result",
    "_do": "put the tasks directly under the task",
    "_type": "write the operator as `name>: command`",
    "_command": "write the operator as `name>: command`",
}
SCHEDULE_KINDS = ("daily", "hourly", "weekly", "monthly", "minutes_interval", "cron")
SCHEDULE_OPTIONS = {"skip_on_overtime", "skip_delayed_by", "start", "end"}
BACKFILL_LIMIT = 100  # Digdag refuses to backfill more sessions than this in one call

_REF = re.compile(r"\$\{(.*?)\}", re.S)
_PLAIN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*$")
_SECRET = re.compile(r"^\s*secret:([A-Za-z0-9_.\-]+)\s*$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class WorkflowError(ConfigError):
    """A workflow outside the supported subset, or invalid: names the file, the task and the field."""

    def __init__(self, message: str, *, file: str | Path, task: str | None = None, hint: str | None = None):
        self.file = str(file)
        self.task = task
        where = self.file + (f": task {task}" if task else "")
        super().__init__(f"{where}: {message}", hint=hint)


# -- YAML ------------------------------------------------------------------------------------------------------


class _DigLoader(yaml.SafeLoader):
    """YAML as Digdag workflows are written: `07:00:00` and `2026-11-21` stay strings (PyYAML's YAML 1.1 would
    make them a base-60 integer and a date), duplicate keys are errors, `!include` is refused."""

    yaml_implicit_resolvers: dict = {}


_DigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_DigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_DigLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_DigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)
_DigLoader.add_constructor("tag:yaml.org,2002:int", lambda loader, node: int(loader.construct_scalar(node)))


def _construct_mapping(loader: _DigLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen[key] = loader.construct_object(value_node, deep=deep)
    return seen


def _refuse_include(loader, suffix, node):
    raise yaml.constructor.ConstructorError(
        None,
        None,
        f"tag {suffix or '!include'} is not supported: write the tasks in a separate .dig file and "
        "run it with call>",
        node.start_mark,
    )


_DigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_DigLoader.add_multi_constructor("!", _refuse_include)


def load_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise WorkflowError("file not found", file=path) from None
    try:
        data = yaml.load(text, Loader=_DigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        hint = "put the tasks in another .dig file and run it with call>" if "include" in str(e) else None
        raise WorkflowError(f"not valid workflow YAML: {e}", file=path, hint=hint) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise WorkflowError(f"top level must be a mapping, got {type(data).__name__}", file=path)
    return data


# -- variables -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    text: str  # what is between ${ and }
    name: str | None = None  # a plain (dotted) variable
    secret: str | None = None  # the key of ${secret:key}


def references(value: Any) -> list[Reference]:
    """Every ``${...}`` in a string, or in the strings of a nested value."""
    out: list[Reference] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out += references(k) + references(v)
    elif isinstance(value, list):
        for v in value:
            out += references(v)
    elif isinstance(value, str):
        for m in _REF.finditer(value):
            inner = m.group(1)
            plain, secret = _PLAIN.match(inner), _SECRET.match(inner)
            out.append(
                Reference(
                    inner, name=plain.group(1) if plain else None, secret=secret.group(1) if secret else None
                )
            )
    return out


def check_references(value: Any, *, file: Path, task: str, field: str, secrets_allowed: bool = False) -> None:
    for ref in references(value):
        if ref.secret is not None:
            if not secrets_allowed:
                raise WorkflowError(
                    f"field '{field}': ${{secret:{ref.secret}}} is only allowed in _env",
                    file=file,
                    task=task,
                    hint="map the secret to an environment variable: _env: {NAME: ${secret:key}}",
                )
        elif ref.name is None:
            raise WorkflowError(
                f"field '{field}': ${{{ref.text}}} is a JavaScript expression; only plain ${{name}} references "
                "are supported",
                file=file,
                task=task,
                hint="do date arithmetic in the reco CLI (it takes --date ${session_date}) or use a built-in such "
                "as ${last_session_date} / ${session_date_compact}",
            )


def secret_env_name(key: str) -> str:
    """Local stand-in for Digdag's secret store: ``${secret:slack.webhook_url}`` reads $SLACK_WEBHOOK_URL."""
    return re.sub(r"[^A-Za-z0-9]", "_", key).upper()


def format_value(value: Any) -> str:
    """A parameter as Digdag writes it into a string: booleans and null the JavaScript way, objects as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class UndefinedVariable(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def lookup(params: dict, dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UndefinedVariable(dotted)
        node = node[part]
    return node


def render(value: Any, params: dict, secrets=None) -> Any:
    """Substitute ``${name}`` (and ``${secret:key}`` when a ``secrets(key) -> str`` function is given)."""
    if isinstance(value, dict):
        return {render(k, params, secrets): render(v, params, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, params, secrets) for v in value]
    if not isinstance(value, str):
        return value

    def repl(m: re.Match) -> str:
        inner = m.group(1)
        secret = _SECRET.match(inner)
        if secret:
            if secrets is None:
                raise UndefinedVariable(f"secret:{secret.group(1)}")
            return secrets(secret.group(1))
        plain = _PLAIN.match(inner)
        if not plain:
            raise UndefinedVariable(inner)
        return format_value(lookup(params, plain.group(1)))

    return _REF.sub(repl, value)


def is_env_key(name: str) -> bool:
    return bool(_ENV_KEY.match(name))


# -- retry, parallel, schedule, sla ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    limit: int
    interval: float = 0.0
    interval_type: str = "constant"
    max_interval: float | None = None

    def delay(self, retry_index: int) -> float:
        """Seconds to wait before retry number ``retry_index`` (0 for the first retry)."""
        d = self.interval * (2**retry_index if self.interval_type == "exponential" else 1)
        return min(d, self.max_interval) if self.max_interval is not None else d


def parse_retry(value: Any, *, file: Path, task: str) -> RetryPolicy:
    hint = "_retry: 3  or  _retry: {limit: 3, interval: 10, interval_type: exponential}"
    if isinstance(value, bool) or not isinstance(value, (int, dict, str)):
        raise WorkflowError(
            f"_retry must be a number or a mapping, got {value!r}", file=file, task=task, hint=hint
        )
    if isinstance(value, str):
        if not value.isdigit():
            raise WorkflowError(f"_retry {value!r} is not a number", file=file, task=task, hint=hint)
        value = int(value)
    if isinstance(value, int):
        value = {"limit": value}
    unknown = set(value) - {"limit", "interval", "interval_type", "max_interval"}
    if unknown:
        raise WorkflowError(
            f"_retry: unknown field(s) {', '.join(sorted(unknown))}", file=file, task=task, hint=hint
        )
    limit = value.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise WorkflowError(
            f"_retry.limit must be an integer >= 0, got {limit!r}", file=file, task=task, hint=hint
        )
    interval = value.get("interval", 0)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 0:
        raise WorkflowError(
            f"_retry.interval must be seconds >= 0, got {interval!r}", file=file, task=task, hint=hint
        )
    itype = value.get("interval_type", "constant")
    if itype not in ("constant", "exponential"):
        raise WorkflowError(
            f"_retry.interval_type must be constant or exponential, got {itype!r}",
            file=file,
            task=task,
            hint=hint,
        )
    max_interval = value.get("max_interval")
    if max_interval is not None and (
        isinstance(max_interval, bool) or not isinstance(max_interval, (int, float)) or max_interval < 0
    ):
        raise WorkflowError(
            f"_retry.max_interval must be seconds >= 0, got {max_interval!r}", file=file, task=task
        )
    return RetryPolicy(limit, float(interval), itype, None if max_interval is None else float(max_interval))


def parse_parallel(value: Any, *, file: Path, task: str) -> tuple[bool, int | None]:
    if isinstance(value, bool):
        return value, None
    if isinstance(value, dict) and set(value) == {"limit"}:
        limit = value["limit"]
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
            return True, limit
    raise WorkflowError(
        f"_parallel must be true, false or {{limit: N}} with N >= 1, got {value!r}",
        file=file,
        task=task,
        hint="_parallel: true  or  _parallel: {limit: 2}",
    )


_HMS = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})$")
_MS = re.compile(r"^(\d{1,2}):(\d{2})$")
_WEEKDAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_CRON_NAMES = {
    3: {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m},
    4: _WEEKDAYS,
}
_CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def _hms_seconds(text: str) -> int | None:
    m = _HMS.match(text)
    if not m:
        return None
    h, mi, s = (int(g) for g in m.groups())
    if h > 23 or mi > 59 or s > 59:
        return None
    return h * 3600 + mi * 60 + s


def _parse_cron_field(text: str, index: int) -> set[int]:
    lo, hi = _CRON_RANGES[index]
    names = _CRON_NAMES.get(index, {})
    out: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"bad step in {text!r}")
            step = int(step_text)
        if part == "*":
            a, b = lo, hi
        else:
            ends = part.split("-", 1)
            vals = []
            for e in ends:
                e = e.lower()
                if e in names:
                    vals.append(names[e])
                elif e.isdigit():
                    vals.append(int(e))
                else:
                    raise ValueError(f"bad value {e!r} in {text!r}")
            a = vals[0]
            b = vals[1] if len(vals) == 2 else (hi if step > 1 else a)
        if not (lo <= a <= hi and lo <= b <= hi and a <= b):
            raise ValueError(f"{text!r} is outside {lo}-{hi}")
        out.update(range(a, b + 1, step))
    if index == 4 and 7 in out:
        out = (out - {7}) | {0}
    return out


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression evaluated on local wall-clock times (Digdag's schedules are all cron-like)."""

    minutes: frozenset
    hours: frozenset
    days: frozenset
    months: frozenset
    weekdays: frozenset  # 0 = Sunday
    dom_any: bool
    dow_any: bool

    @classmethod
    def parse(cls, expr: str) -> Cron:
        parts = expr.split()
        if len(parts) != 5:
            raise ValueError(f"cron needs 5 fields (minute hour day month weekday), got {len(parts)}")
        sets = [frozenset(_parse_cron_field(p, i)) for i, p in enumerate(parts)]
        return cls(*sets, dom_any=parts[2] == "*", dow_any=parts[4] == "*")

    def _day_ok(self, d: datetime) -> bool:
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow  # cron: both restricted means either

    def matches(self, t: datetime) -> bool:
        return self._day_ok(t) and t.hour in self.hours and t.minute in self.minutes

    def next_after(self, t: datetime) -> datetime:
        t = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(200000):
            if not self._day_ok(t):
                t = datetime.combine(t.date() + timedelta(days=1), time.min)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise ValueError("cron expression never matches")

    def prev_before(self, t: datetime) -> datetime:
        t = (
            (t - timedelta(minutes=1))
            if (t.second == 0 and t.microsecond == 0)
            else t.replace(second=0, microsecond=0)
        )
        for _ in range(200000):
            if not self._day_ok(t):
                t = datetime.combine(t.date(), time.min) - timedelta(minutes=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) - timedelta(minutes=1)
            elif t.minute not in self.minutes:
                t -= timedelta(minutes=1)
            else:
                return t
        raise ValueError("cron expression never matches")


@dataclass(frozen=True)
class Schedule:
    """``schedule:`` of a workflow: session times are cron slots; a run starts ``delay`` after its slot."""

    kind: str
    spec: str
    cron: Cron
    delay: timedelta
    options: dict = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.kind}>: {self.spec}"

    def next_session(self, t: datetime) -> datetime:
        """The first session time strictly after ``t`` (an aware datetime), in t's timezone."""
        tz = t.tzinfo
        return self.cron.next_after(t.replace(tzinfo=None)).replace(tzinfo=tz)

    def last_session(self, t: datetime) -> datetime:
        tz = t.tzinfo
        return self.cron.prev_before(t.replace(tzinfo=None)).replace(tzinfo=tz)

    def sessions_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Session times in [start, end)."""
        out = []
        t = (
            start
            if self.cron.matches(start.replace(tzinfo=None)) and start.second == 0
            else self.next_session(start)
        )
        while t < end:
            out.append(t)
            t = self.next_session(t)
        return out


def parse_schedule(value: Any, *, file: Path) -> Schedule:
    hint = (
        "schedule: {daily>: 07:00:00}  (others: hourly>: MM:SS, weekly>: Sun,HH:MM:SS, monthly>: D,HH:MM:SS, "
        "minutes_interval>: N, cron>: '0 7 * * *')"
    )
    if not isinstance(value, dict):
        raise WorkflowError(f"schedule must be a mapping, got {value!r}", file=file, hint=hint)
    kinds = [k for k in value if isinstance(k, str) and k.endswith(">")]
    if len(kinds) != 1:
        raise WorkflowError(
            f"schedule needs exactly one of {', '.join(k + '>' for k in SCHEDULE_KINDS)}",
            file=file,
            hint=hint,
        )
    kind = kinds[0][:-1]
    if kind not in SCHEDULE_KINDS:
        raise WorkflowError(f"schedule: unknown {kind}>", file=file, hint=hint)
    unknown = set(value) - {kinds[0]} - SCHEDULE_OPTIONS
    if unknown:
        raise WorkflowError(
            f"schedule: unknown option(s) {', '.join(sorted(map(str, unknown)))}",
            file=file,
            hint=f"options: {', '.join(sorted(SCHEDULE_OPTIONS))}",
        )
    spec = value[kinds[0]]
    text = str(spec).strip()

    def bad(expected: str) -> WorkflowError:
        return WorkflowError(f"schedule: {kind}>: {spec!r} is not {expected}", file=file, hint=hint)

    delay = 0
    if kind == "daily":
        delay = _hms_seconds(text)
        if delay is None:
            raise bad("HH:MM:SS")
        cron_expr = "0 0 * * *"
    elif kind == "hourly":
        m = _MS.match(text)
        if not m or int(m.group(1)) > 59 or int(m.group(2)) > 59:
            raise bad("MM:SS")
        delay = int(m.group(1)) * 60 + int(m.group(2))
        cron_expr = "0 * * * *"
    elif kind == "weekly":
        day, _, hms = text.partition(",")
        delay = _hms_seconds(hms.strip())
        if day.strip().lower()[:3] not in _WEEKDAYS or delay is None:
            raise bad("Day,HH:MM:SS (e.g. Sun,09:00:00)")
        cron_expr = f"0 0 * * {_WEEKDAYS[day.strip().lower()[:3]]}"
    elif kind == "monthly":
        day, _, hms = text.partition(",")
        delay = _hms_seconds(hms.strip())
        if not day.strip().isdigit() or not 1 <= int(day) <= 31 or delay is None:
            raise bad("D,HH:MM:SS (e.g. 1,09:00:00)")
        cron_expr = f"0 0 {int(day)} * *"
    elif kind == "minutes_interval":
        if not text.isdigit() or not 1 <= int(text) <= 60:
            raise bad("a number of minutes (1-60)")
        cron_expr = f"*/{int(text)} * * * *"
    else:
        cron_expr = text
    try:
        cron = Cron.parse(cron_expr)
    except ValueError as e:
        raise WorkflowError(f"schedule: {kind}>: {spec!r}: {e}", file=file, hint=hint) from None
    options = {k: v for k, v in value.items() if k in SCHEDULE_OPTIONS}
    for key in ("start", "end"):
        if key in options:
            try:
                date.fromisoformat(str(options[key]))
            except ValueError:
                raise WorkflowError(
                    f"schedule: {key}: {options[key]!r} is not a date YYYY-MM-DD", file=file
                ) from None
    if "skip_on_overtime" in options and not isinstance(options["skip_on_overtime"], bool):
        raise WorkflowError("schedule: skip_on_overtime must be true or false", file=file)
    if "skip_delayed_by" in options and not re.match(
        r"^\d+\s*[smhd]$", str(options["skip_delayed_by"]).strip()
    ):
        raise WorkflowError(
            f"schedule: skip_delayed_by {options['skip_delayed_by']!r} is not a duration like 30m", file=file
        )
    return Schedule(kind, text, cron, timedelta(seconds=delay), options)


@dataclass
class Sla:
    kind: str  # "time" (next HH:MM after the attempt starts) or "duration" (after the attempt starts)
    seconds: int  # time of day or duration, in seconds
    fail: bool
    alert: bool
    task: Task | None

    def deadline(self, started: datetime) -> datetime:
        """Digdag's rule: both are counted from when the attempt starts (an aware datetime in the workflow tz)."""
        if self.kind == "duration":
            return started + timedelta(seconds=self.seconds)
        day_start = datetime.combine(started.date(), time.min, tzinfo=started.tzinfo)
        t = day_start + timedelta(seconds=self.seconds)
        return t if t > started else t + timedelta(days=1)


def _parse_hm(text: str) -> int | None:
    m = _MS.match(text) or _HMS.match(text)
    if not m:
        return None
    parts = [int(g) for g in m.groups()] + [0]
    h, mi, s = parts[:3]
    if mi > 59 or s > 59:
        return None
    return h * 3600 + mi * 60 + s


# -- the task tree ---------------------------------------------------------------------------------------------


@dataclass
class Task:
    name: str  # "+train", "^error", "^sla", "^sub"
    full_name: str  # "+demo+daily^sub+train"
    file: Path
    workdir: Path  # where sh> runs and call> paths are resolved
    operator: str | None = None
    command: Any = None
    params: dict = field(default_factory=dict)  # plain keys of an operator task
    export: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    children: list[Task] = field(default_factory=list)
    parallel: bool = False
    parallel_limit: int | None = None
    retry: RetryPolicy | None = None
    error: Task | None = None

    @property
    def is_group(self) -> bool:
        return self.operator is None or self.operator == "call"

    def walk(self):
        yield self
        if self.error:
            yield from self.error.walk()
        for c in self.children:
            yield from c.walk()


@dataclass
class Workflow:
    name: str
    path: Path
    timezone: str
    schedule: Schedule | None
    sla: Sla | None
    root: Task
    files: list[Path] = field(default_factory=list)  # this file and every file it calls

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def session_time(self, day: date) -> datetime:
        """``--session-date D``: 00:00 of D in the workflow timezone (a daily> session time)."""
        return datetime.combine(day, time.min, tzinfo=self.tz)


def _parse_task(
    name: str, full_name: str, body: Any, *, file: Path, workdir: Path, top: bool, calling: tuple[Path, ...]
) -> Task:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise WorkflowError(
            f"a task must be a mapping of keys, got {type(body).__name__} {body!r}",
            file=file,
            task=full_name,
            hint="+name: {sh>: command}",
        )
    task = Task(name=name, full_name=full_name, file=file, workdir=workdir)
    operators = []
    for key, value in body.items():
        if not isinstance(key, str):
            raise WorkflowError(f"key {key!r} must be a string", file=file, task=full_name)
        if key.startswith("+"):
            if len(key) < 2:
                raise WorkflowError("a task needs a name after '+'", file=file, task=full_name)
            task.children.append(
                _parse_task(
                    key, full_name + key, value, file=file, workdir=workdir, top=False, calling=calling
                )
            )
        elif key.endswith(">"):
            operators.append((key[:-1], value))
        elif key in UNSUPPORTED_KEYS:
            raise WorkflowError(
                f"{key} is not supported by the local runner",
                file=file,
                task=full_name,
                hint=UNSUPPORTED_KEYS[key],
            )
        elif key == "_export":
            if not isinstance(value, dict):
                raise WorkflowError("_export must be a mapping", file=file, task=full_name)
            if "_env" in value:
                if not isinstance(value["_env"], dict):
                    raise WorkflowError("_export._env must be a mapping", file=file, task=full_name)
                check_references(
                    value["_env"], file=file, task=full_name, field="_export._env", secrets_allowed=True
                )
            check_references(
                {k: v for k, v in value.items() if k != "_env"}, file=file, task=full_name, field="_export"
            )
            task.export = value
        elif key == "_env":
            if not isinstance(value, dict) or not all(isinstance(k, str) and is_env_key(k) for k in value):
                raise WorkflowError(
                    "_env must map environment variable names to values",
                    file=file,
                    task=full_name,
                    hint="_env: {SLACK_WEBHOOK_URL: ${secret:slack.webhook_url}}",
                )
            check_references(value, file=file, task=full_name, field="_env", secrets_allowed=True)
            task.env = value
        elif key == "_retry":
            task.retry = parse_retry(value, file=file, task=full_name)
        elif key == "_parallel":
            task.parallel, task.parallel_limit = parse_parallel(value, file=file, task=full_name)
        elif key == "_error":
            task.error = _parse_task(
                "^error", full_name + "^error", value, file=file, workdir=workdir, top=False, calling=calling
            )
        elif key in TOP_LEVEL_KEYS:
            if not top:
                raise WorkflowError(
                    f"{key}: is only allowed at the top of a workflow file", file=file, task=full_name
                )
        elif key.startswith("_"):
            raise WorkflowError(
                f"unknown directive {key}",
                file=file,
                task=full_name,
                hint=f"supported: {', '.join(sorted(TASK_KEYS))}",
            )
        else:
            check_references(value, file=file, task=full_name, field=key)
            task.params[key] = value
    if len(operators) > 1:
        raise WorkflowError(
            f"a task has one operator, got {', '.join(o + '>' for o, _ in operators)}",
            file=file,
            task=full_name,
            hint="split it into two +tasks",
        )
    if operators:
        op, command = operators[0]
        if op not in SUPPORTED_OPERATORS:
            known = op in KNOWN_DIGDAG_OPERATORS
            raise WorkflowError(
                f"operator {op}> is {'not supported by the local runner' if known else 'unknown'}",
                file=file,
                task=full_name,
                hint=f"use one of {', '.join(o + '>' for o in SUPPORTED_OPERATORS)}"
                + ("; wrap the work in a `reco` command run by sh>" if known else ""),
            )
        if task.children:
            raise WorkflowError(
                f"a task with {op}> cannot also have +child tasks",
                file=file,
                task=full_name,
                hint="move the operator into a +child task",
            )
        if op in ("sh", "call") and (not isinstance(command, str) or not command.strip()):
            raise WorkflowError(
                f"{op}> needs a {'command' if op == 'sh' else 'file name'}", file=file, task=full_name
            )
        check_references(command, file=file, task=full_name, field=f"{op}>")
        task.operator, task.command = op, command
        if op == "call":
            if "${" in command:
                raise WorkflowError(
                    "call> takes a literal file name, not a variable", file=file, task=full_name
                )
            target = (workdir / command).resolve()
            if not command.endswith(".dig"):
                raise WorkflowError(f"call>: {command!r} must name a .dig file", file=file, task=full_name)
            if target in calling:
                chain = " -> ".join(p.name for p in (*calling, target))
                raise WorkflowError(f"call>: {command} calls itself ({chain})", file=file, task=full_name)
            if not target.exists():
                raise WorkflowError(
                    f"call>: {command} not found (looked for {target})",
                    file=file,
                    task=full_name,
                    hint="call> paths are relative to the directory of the calling file",
                )
            data = load_yaml(target)
            for key in ("schedule", "sla"):
                if key in data:
                    raise WorkflowError(
                        f"{key}: in a called file is ignored by Digdag; put it in the workflow that calls it",
                        file=target,
                    )
            task.children.append(
                _parse_task(
                    "^sub",
                    full_name + "^sub",
                    data,
                    file=target,
                    workdir=target.parent,
                    top=True,
                    calling=(*calling, target),
                )
            )
    elif task.params:
        names = ", ".join(sorted(task.params))
        raise WorkflowError(
            f"plain key(s) {names} on a group are not visible to its tasks",
            file=file,
            task=full_name,
            hint=f"put them under _export: {{{names}: ...}}",
        )
    if task.env and task.operator != "sh":
        raise WorkflowError(
            "_env only applies to sh> tasks",
            file=file,
            task=full_name,
            hint="put it under _export to give it to every sh> task below",
        )
    if not task.operator and not task.children:
        raise WorkflowError(
            "a task needs an operator (sh>, echo>, call>, fail>) or +child tasks", file=file, task=full_name
        )
    return task


def files_called(task: Task) -> list[Path]:
    return [t.children[0].file for t in task.walk() if t.operator == "call"]


def load_workflow(path: str | Path) -> Workflow:
    """Parse a .dig file and every file it call>s; raises WorkflowError naming the file and task."""
    path = Path(path).resolve()
    if path.suffix != ".dig":
        raise WorkflowError("a workflow file name ends with .dig", file=path)
    data = load_yaml(path)
    name = path.stem
    tz = data.get("timezone", "UTC")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise WorkflowError(
            f"timezone: unknown time zone {tz!r}", file=path, hint="e.g. timezone: Asia/Tokyo"
        ) from None
    schedule = parse_schedule(data["schedule"], file=path) if "schedule" in data else None
    root = _parse_task(
        "+" + name,
        "+" + name,
        {k: v for k, v in data.items() if k != "sla"},
        file=path,
        workdir=path.parent,
        top=True,
        calling=(path,),
    )
    sla = _parse_sla(data["sla"], path, name) if "sla" in data else None
    return Workflow(
        name=name,
        path=path,
        timezone=str(tz),
        schedule=schedule,
        sla=sla,
        root=root,
        files=[path, *dict.fromkeys(files_called(root))],
    )


def _parse_sla(value: Any, path: Path, name: str) -> Sla:
    hint = "sla: {duration: 02:00, +alert: {sh>: reco notify sla ...}}  or  sla: {time: '09:30', ...}"
    if not isinstance(value, dict):
        raise WorkflowError("sla must be a mapping", file=path, hint=hint)
    kinds = [k for k in ("time", "duration") if k in value]
    if len(kinds) != 1:
        raise WorkflowError("sla needs exactly one of time: HH:MM or duration: HH:MM", file=path, hint=hint)
    kind = kinds[0]
    seconds = _parse_hm(str(value[kind]))
    if seconds is None or (kind == "time" and seconds >= 86400):
        raise WorkflowError(f"sla: {kind}: {value[kind]!r} is not HH:MM", file=path, hint=hint)
    unknown = {k for k in value if not str(k).startswith("+")} - {"time", "duration", "fail", "alert"}
    if unknown:
        raise WorkflowError(
            f"sla: unknown field(s) {', '.join(sorted(map(str, unknown)))}", file=path, hint=hint
        )
    for flag in ("fail", "alert"):
        if flag in value and not isinstance(value[flag], bool):
            raise WorkflowError(f"sla: {flag} must be true or false", file=path)
    tasks = {k: v for k, v in value.items() if str(k).startswith("+")}
    task = (
        _parse_task("^sla", f"+{name}^sla", tasks, file=path, workdir=path.parent, top=False, calling=(path,))
        if tasks
        else None
    )
    if task is None and not value.get("fail") and not value.get("alert"):
        raise WorkflowError(
            "sla does nothing: add a +task (e.g. a Slack alert), fail: true or alert: true",
            file=path,
            hint=hint,
        )
    return Sla(kind, seconds, bool(value.get("fail", False)), bool(value.get("alert", False)), task)
