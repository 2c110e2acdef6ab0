"""``reco digdag check``: every workflow parses, stays inside the supported subset, and its ``reco`` commands are
ones the CLI accepts.

For each top-level ``.dig`` file (a Digdag workflow) the check walks the task tree with the variables a real
session would have (built-ins for a sample date, ``env``, the ``_export``s in scope, ``error.*`` inside ``_error``)
and then:

* every ``${name}`` must be defined where it is used (Digdag fails the task at run time otherwise);
* every ``reco ...`` command in an ``sh>`` is parsed by the CLI's own argument parser (given by the caller),
  and a ``--pipeline`` must name a file in ``config/pipelines/``;
* the steps a workflow submits (``reco submit STEP`` / ``reco step STEP``) match the pipeline graph
  (batch.graph): every step enabled for the pipeline is there, none runs before (or in parallel with) a step it
  reads from, and each names a step that exists;
* the config of every pipeline a command names is valid as that command's ``--env`` merges it (``envs.<env>``
  over the base values, and the environment's section of environments.yaml), so a typo inside ``envs.prod``
  fails ``reco digdag check --env prod`` and not the first prod run;
* ``_retry`` sits on leaf tasks only (on a group Digdag reruns the whole group, digdag#701/#728);
* schedule, sla, retry and parallel syntax (already enforced by the parser in workflow.py).

``.dig`` files in sub-directories are shared task files: they are parsed on their own for syntax and checked in
the context of each workflow that ``call>``s them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import shlex
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import batch.steps  # noqa: F401  registers the steps
from batch.config import ENVIRONMENTS, list_pipelines, load_environment, load_pipeline, pipeline_path
from batch.digdag.local import builtin_variables
from batch.digdag.workflow import (
    Task,
    UndefinedVariable,
    Workflow,
    WorkflowError,
    load_workflow,
    load_yaml,
    render,
)
from batch.errors import ConfigError
from batch.graph import GRAPH

SAMPLE_DATE = date(2026, 11, 21)
_SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ";;", "(", ")"}


@dataclass(frozen=True)
class Problem:
    file: str
    task: str | None
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file + (f": task {self.task}" if self.task else "")
        return f"{where}: {self.message}" + (f" (hint: {self.hint})" if self.hint else "")


@dataclass
class CheckReport:
    workflows: list[str]
    task_files: list[str]
    problems: list[Problem]
    commands_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def reco_commands(command: str) -> list[list[str]]:
    """The argument lists of every ``reco`` invocation in a shell command line."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out, current = [], []
    for token in list(lexer) + [";"]:
        if token in _SHELL_OPERATORS:
            if current:
                # skip leading VAR=value assignments and `exec`
                while current and ("=" in current[0] and not current[0].startswith("-")):
                    current.pop(0)
                if current and current[0] == "exec":
                    current.pop(0)
                if current and (current[0] == "reco" or current[0].endswith("/reco")):
                    out.append(current[1:])
            current = []
        else:
            current.append(token)
    return out


@dataclass
class Submission:
    """A step a workflow runs: which task, and when relative to the others (tasks of a ``_parallel`` group start
    at the same tick)."""

    task: Task
    step: str
    pipeline: str
    start: int
    end: int


def _parse_reco(
    parser: argparse.ArgumentParser, argv: list[str]
) -> tuple[argparse.Namespace | None, str | None]:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            ns = parser.parse_args(argv)
    except SystemExit:
        lines = [ln for ln in err.getvalue().strip().splitlines() if ln.strip()]
        return None, lines[-1] if lines else "rejected by the reco argument parser"
    return ns, None


class _ConfigErrors:
    """The merged config (base, then ``envs.<env>``) of each pipeline and environment a command names, validated
    once each. Cloud environments take their project ids from variables the deployment sets; a check on a
    laptop fills unset ones with a placeholder, so it judges the files, not this shell."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], str | None] = {}

    def check(self, pipeline: str, env: str) -> str | None:
        key = (pipeline, env)
        if key not in self.seen:
            try:
                load_pipeline(pipeline, env)
                load_environment(env, unset_variables="placeholder")
                self.seen[key] = None
            except ConfigError as e:
                self.seen[key] = f"config for --env {env}: {e}"
        return self.seen[key]


class _Checker:
    def __init__(
        self,
        wf: Workflow,
        session_params: dict,
        pipelines: set[str],
        parser: argparse.ArgumentParser,
        config_errors: _ConfigErrors | None = None,
    ):
        self.config_errors = config_errors or _ConfigErrors()
        self.wf = wf
        self.parser = parser
        self.clock = (
            0  # ticks of the workflow's order: a sequential task takes one, a parallel group its longest
        )
        self.submissions: list[Submission] = []
        self.in_error = 0
        self.params = session_params
        self.pipelines = pipelines
        self.problems: list[Problem] = []
        self.commands = 0
        self.builtins = builtin_variables(
            wf, wf.session_time(SAMPLE_DATE), attempt_id="1", session_id="1", retry_attempt_name=""
        )

    def problem(self, task: Task, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(str(task.file), task.full_name, message, hint))

    def run(self) -> None:
        self.walk(self.wf.root, dict(self.params))
        self.check_graph()
        if self.wf.sla is not None and self.wf.sla.task is not None:
            scope = self.scoped(self.wf.root, dict(self.params))
            if scope is not None:
                self.walk(self.wf.sla.task, scope)

    def scoped(self, task: Task, scope: dict) -> dict | None:
        out = dict(scope)
        for key, value in task.export.items():
            if key == "_env":
                out["_env"] = {**(out.get("_env") or {}), **value}
                continue
            try:
                out[key] = render(copy.deepcopy(value), out)
            except UndefinedVariable as e:
                self.problem(task, f"_export.{key}: ${{{e.name}}} is not defined here")
                return None
        return out

    def walk(self, task: Task, scope: dict) -> None:
        new_scope = self.scoped(task, scope)
        if new_scope is None:
            return
        if task.retry is not None and task.is_group:
            self.problem(
                task,
                "_retry on a group reruns every task in it (digdag#701, #728)",
                hint="put _retry on the leaf tasks whose work is idempotent",
            )
        if task.operator in ("sh", "echo", "fail"):
            start = self.clock
            self.operator(task, new_scope, start)
            self.clock = start + 1
        if task.parallel:
            start, end = self.clock, self.clock
            for child in task.children:
                self.clock = start
                self.walk(child, new_scope)
                end = max(end, self.clock)
            self.clock = end
        else:
            for child in task.children:
                self.walk(child, new_scope)
        if task.error is not None:
            err_scope = dict(new_scope)
            err_scope["error"] = {"message": "sample error message", "stacktrace": "", "task": task.full_name}
            clock, self.in_error = self.clock, self.in_error + 1
            self.walk(task.error, err_scope)
            self.clock, self.in_error = clock, self.in_error - 1

    def check_graph(self) -> None:
        """The submitted steps against the graph: unknown, missing, or ordered before what they read."""
        env = self.params.get("env", "local")
        for pipeline in sorted({s.pipeline for s in self.submissions}):
            mine = [s for s in self.submissions if s.pipeline == pipeline]
            try:
                config = load_pipeline(pipeline, env)
            except ConfigError:
                continue  # reported where the pipeline is named
            enabled = {spec.name for spec in GRAPH.enabled_steps(config)}
            by_step: dict[str, list[Submission]] = {}
            for s in mine:
                by_step.setdefault(s.step, []).append(s)
            for name in sorted(enabled - set(by_step)):
                self.problems.append(
                    Problem(
                        str(self.wf.path),
                        None,
                        f"pipeline {pipeline!r} (env {env}): no task runs step {name!r}",
                        hint=f"add a task `reco submit {name} ...` after the steps it reads from: "
                        + ", ".join(u.name for u in GRAPH.upstream(name)),
                    )
                )
            for s in mine:
                for upstream in GRAPH.upstream(s.step):
                    if upstream.name not in enabled:
                        continue
                    for u in by_step.get(upstream.name, []):
                        if u.end > s.start:
                            self.problem(
                                s.task,
                                f"step {s.step!r} runs before or alongside step {upstream.name!r}, which it reads "
                                f"from ({u.task.full_name})",
                                hint=f"move {s.task.name} after {u.task.name}, outside any _parallel group with it",
                            )

    def operator(self, task: Task, scope: dict, start: int) -> None:
        params = dict(scope)
        try:
            params.update(render(copy.deepcopy(task.params), params))
            params.update(self.builtins)
            params["task_name"] = task.full_name
            command = render(task.command, params)
            render({**(params.get("_env") or {}), **task.env}, params, lambda key: "<secret>")
        except UndefinedVariable as e:
            self.problem(
                task,
                f"${{{e.name}}} is not defined here",
                hint="define it in an _export of this task or a parent, or pass it with -p",
            )
            return
        if task.operator != "sh":
            return
        try:
            commands = reco_commands(command)
        except ValueError as e:
            self.problem(task, f"sh>: cannot split the command: {e}")
            return
        for argv in commands:
            self.commands += 1
            ns, err = _parse_reco(self.parser, argv)
            shown = "reco " + " ".join(argv)
            if err:
                self.problem(task, f"sh>: `{shown}`: {err}", hint="run it with --help to see its arguments")
                continue
            pipeline = getattr(ns, "pipeline", None)
            if pipeline is not None and pipeline not in self.pipelines:
                self.problem(
                    task,
                    f"sh>: `{shown}`: no pipeline named {pipeline!r} ({pipeline_path(pipeline)} "
                    "does not exist)",
                    hint=f"known pipelines: {', '.join(sorted(self.pipelines)) or 'none'}; add "
                    f"config/pipelines/{pipeline}.yaml or fix the workflow's _export",
                )
                continue
            if pipeline is not None:
                env = getattr(ns, "env", None) or self.params.get("env") or "local"
                error = self.config_errors.check(pipeline, env)
                if error:
                    self.problem(task, f"sh>: `{shown}`: {error}", hint="fix the config file named above")
                    continue
            if argv[0] in ("submit", "step") and pipeline is not None and not self.in_error:
                step = getattr(ns, "name", None)
                try:
                    GRAPH.step(step)
                except ConfigError:
                    self.problem(
                        task,
                        f"sh>: `{shown}`: no step named {step!r} in the pipeline graph",
                        hint=f"steps: {', '.join(GRAPH.names())}",
                    )
                    continue
                self.submissions.append(Submission(task, step, pipeline, start, start + 1))


def _dig_files(path: Path) -> tuple[list[Path], list[Path]]:
    if path.is_file():
        return [path], []
    if not path.is_dir():
        raise WorkflowError("no such file or directory", file=path)
    workflows = sorted(path.glob("*.dig"))
    task_files = sorted(p for p in path.rglob("*.dig") if p.parent != path)
    return workflows, task_files


def check_paths(
    paths: list[str | Path],
    *,
    parser: argparse.ArgumentParser,
    env: str = "local",
    params: dict | None = None,
) -> CheckReport:
    """Check workflows (files) and projects (directories: their top-level .dig files are the workflows).

    ``parser`` is the ``reco`` argument parser the ``sh>`` commands must satisfy (batch.cli.build_parser())."""
    session_params = {"env": env, **(params or {})}
    if env not in ENVIRONMENTS:
        raise WorkflowError(f"unknown environment {env!r}", file="--env")
    pipelines = set(list_pipelines())
    config_errors = _ConfigErrors()
    report = CheckReport([], [], [])
    for raw in paths:
        path = Path(raw)
        workflows, task_files = _dig_files(path)
        if path.is_dir() and not workflows:
            report.problems.append(Problem(str(path), None, "no workflow (.dig file) here"))
        for tf in task_files:
            report.task_files.append(str(tf))
            try:
                load_yaml(tf)
            except WorkflowError as e:
                report.problems.append(Problem(e.file, e.task, str(e).split(": ", 1)[-1]))
        for wf_path in workflows:
            report.workflows.append(str(wf_path))
            try:
                wf = load_workflow(wf_path)
            except WorkflowError as e:
                report.problems.append(_from_error(e))
                continue
            checker = _Checker(wf, session_params, pipelines, parser, config_errors)
            checker.run()
            report.problems.extend(checker.problems)
            report.commands_checked += checker.commands
    return report


def _from_error(e: WorkflowError) -> Problem:
    prefix = e.file + (f": task {e.task}" if e.task else "") + ": "
    text = super(WorkflowError, e).__str__()
    message = text[len(prefix) :] if text.startswith(prefix) else text
    if e.hint and message.endswith(f" (hint: {e.hint})"):
        message = message[: -len(f" (hint: {e.hint})")]
    return Problem(e.file, e.task, message, e.hint)
