"""HCL-parsing checks of terraform/: layout, variables, environments, project ids, protection, security settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from tf_helpers import (
    ENVS,
    MODULES_DIR,
    PLATFORM_DIR,
    TF_ROOT,
    attr,
    blocks,
    env_dir,
    is_expression,
    is_required,
    load_hcl,
    load_settings,
    load_tfvars,
    locals_of,
    module_dirs,
    named_blocks,
    names_locals,
    object_type_attributes,
    optional_default,
    parse_dir,
    platform_calls,
    resources,
    strip_meta,
    var_ref,
)

ENV_FILES = (
    "main.tf",
    "variables.tf",
    "outputs.tf",
    "versions.tf",
    "providers.tf",
    "backend.tf",
    "terraform.tfvars",
)
# What an env folder may hold besides ENV_FILES: the state moves of the refactoring into modules/platform and the
# example of the uncommitted project file.
ENV_EXTRA_FILES = {"project.auto.tfvars.example"}
PLATFORM_SOURCE = "../../modules/platform"
SETTINGS_TYPE = PLATFORM_DIR / "variables.tf"
MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf")


def all_module_and_env_dirs() -> list[Path]:
    return module_dirs() + [env_dir(e) for e in ENVS]


def all_resources() -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for directory in module_dirs():
        for (rtype, name), body in resources(parse_dir(directory)).items():
            out[(directory.name, rtype, name)] = body
    return out


# --- layout -----------------------------------------------------------------------------------------------


def test_expected_modules_exist() -> None:
    names = {p.name for p in module_dirs()}
    expected = {"names", "project", "network", "gke", "registry", "storage", "bigquery", "iam", "cloudsql"}
    assert expected | {"secrets", "iap", "platform"} <= names


@pytest.mark.parametrize("module", [p.name for p in module_dirs()])
def test_module_has_standard_files(module: str) -> None:
    for name in MODULE_FILES:
        assert (MODULES_DIR / module / name).is_file(), f"modules/{module}/{name} missing"


@pytest.mark.parametrize("env", ENVS)
def test_env_has_standard_files(env: str) -> None:
    for name in ENV_FILES:
        assert (env_dir(env) / name).is_file(), f"envs/{env}/{name} missing"


def _google_pin(directory: Path) -> str | None:
    for body in parse_dir(directory).get("terraform", []):
        for providers in blocks(body, "required_providers"):
            google = attr(providers, "google", None)
            if google:
                assert google["source"] == "hashicorp/google"
                return google["version"]
    return None


@pytest.mark.parametrize("directory", all_module_and_env_dirs(), ids=lambda p: str(p.relative_to(TF_ROOT)))
def test_google_provider_version_is_pinned(directory: Path) -> None:
    parsed = parse_dir(directory)
    uses_google = (
        any(rtype.startswith("google_") for rtype, _ in resources(parsed)) or directory.parent.name == "envs"
    )
    version = _google_pin(directory)
    if not uses_google:
        assert any(
            blocks(b, "required_version") or "required_version" in b for b in parsed.get("terraform", [])
        )
        return
    assert version, f"{directory} uses the google provider without pinning it in versions.tf"
    # An upper bound: either "~> X.Y" or an explicit "< N".
    assert "~>" in version or "<" in version, f"{directory}: google provider {version!r} has no upper bound"


# --- variables --------------------------------------------------------------------------------------------


def _all_variables() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for directory in all_module_and_env_dirs():
        for name, body in named_blocks(parse_dir(directory), "variable").items():
            out.append((str(directory.relative_to(TF_ROOT)), name, body))
    return out


def test_there_are_variables_to_check() -> None:
    assert len(_all_variables()) > 50


def test_every_variable_has_type_and_description() -> None:
    problems = []
    for where, name, body in _all_variables():
        if not attr(body, "type", None):
            problems.append(f"{where}: variable {name} has no type")
        description = attr(body, "description", "")
        if not isinstance(description, str) or len(description.strip()) < 10:
            problems.append(f"{where}: variable {name} has no real description")
    assert not problems, "\n".join(problems)


def test_every_output_has_description() -> None:
    """Every output is described where it is computed; an env output that only forwards the platform output of
    the same name (test_env_outputs_forward_every_platform_output) is described by that one."""
    problems = []
    for directory in all_module_and_env_dirs():
        for name, body in named_blocks(parse_dir(directory), "output").items():
            if directory.parent.name == "envs" and attr(body, "value") == f"${{module.platform.{name}}}":
                continue
            if not attr(body, "description", ""):
                problems.append(f"{directory.relative_to(TF_ROOT)}: output {name} has no description")
    assert not problems, "\n".join(problems)


def test_module_inputs_exist_in_called_modules() -> None:
    """Every argument an environment (or the platform module) passes to a module is a variable of that module,
    and no required one is missing."""
    meta = {"source", "version", "depends_on", "providers", "count", "for_each"}
    callers = [env_dir(env) for env in ENVS] + [PLATFORM_DIR]
    for caller in callers:
        where = caller.relative_to(TF_ROOT)
        for name, call in named_blocks(parse_dir(caller), "module").items():
            target = (caller / attr(call, "source")).resolve()
            variables = named_blocks(parse_dir(target), "variable")
            passed = {k for k in call if not k.startswith("__")} - meta
            unknown = passed - set(variables)
            assert not unknown, f"{where} module {name}: unknown arguments {sorted(unknown)}"
            required = {v for v, body in variables.items() if "default" not in body}
            missing = required - passed
            assert not missing, f"{where} module {name}: required variables not passed {sorted(missing)}"


# --- environments -----------------------------------------------------------------------------------------


def _module_calls(env: str) -> dict[str, dict[str, Any]]:
    return named_blocks(parse_dir(env_dir(env)), "module")


def test_every_env_calls_the_platform_module_with_the_same_source() -> None:
    for env in ENVS:
        calls = {name: attr(body, "source") for name, body in _module_calls(env).items()}
        assert calls == {"platform": PLATFORM_SOURCE}, f"envs/{env} calls {calls}; expected only the platform"
        assert (env_dir(env) / PLATFORM_SOURCE).resolve() == PLATFORM_DIR


def test_platform_module_calls_every_other_module() -> None:
    calls = {name: attr(body, "source") for name, body in platform_calls().items()}
    assert len(calls) >= 10
    for name, source in calls.items():
        assert source == f"../{name}", f"modules/platform module {name}: source {source!r} is not ../{name}"
        assert (PLATFORM_DIR / source).resolve().is_dir(), f"module source {source} does not exist"
    used = set(calls) | {"platform"}
    assert used == {p.name for p in module_dirs()}, (
        "a module under terraform/modules is not used by the platform"
    )


def test_envs_are_thin_and_identical_except_tfvars() -> None:
    """Environments differ only in their tfvars and backend prefix: the same platform call, variables, outputs,
    providers and state moves everywhere, no resources, no locals, no other module."""
    reference = {
        kind: strip_meta(parse_dir(env_dir("prod")).get(kind)) for kind in ("module", "variable", "output")
    }
    same_files = ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "providers.tf")
    for env in ENVS:
        parsed = parse_dir(env_dir(env))
        for kind, expected in reference.items():
            assert strip_meta(parsed.get(kind)) == expected, f"envs/{env}: {kind} blocks differ from prod's"
        for name in same_files:
            assert (env_dir(env) / name).read_text() == (env_dir("prod") / name).read_text(), (
                f"envs/{env}/{name} differs from prod's"
            )
        assert not resources(parsed), f"envs/{env} declares resources; put them in a module"
        assert not parsed.get("locals") and not parsed.get("data"), (
            f"envs/{env} computes things; use the module"
        )
        files = {p.name for p in env_dir(env).iterdir() if p.is_file()}
        assert files - set(ENV_FILES) - ENV_EXTRA_FILES <= {".terraform.lock.hcl", "project.auto.tfvars"}, (
            files
        )


def test_env_passes_its_variables_straight_to_the_platform() -> None:
    """The env declares exactly the platform's variables and passes each one as var.<same name>."""
    platform_variables = set(named_blocks(parse_dir(PLATFORM_DIR), "variable"))
    for env in ENVS:
        call = _module_calls(env)["platform"]
        passed = {k: attr(call, k) for k in call if not k.startswith("__") and k != "source"}
        assert {k: var_ref(v) for k, v in passed.items()} == {k: k for k in passed}, f"envs/{env}: {passed}"
        assert set(passed) == platform_variables, f"envs/{env} passes {sorted(passed)}"
        assert set(named_blocks(parse_dir(env_dir(env)), "variable")) == platform_variables


def test_settings_is_a_typed_object_with_optional_defaults() -> None:
    attributes = object_type_attributes(SETTINGS_TYPE, "settings")
    assert len(attributes) >= 25
    assert {a for a, t in attributes.items() if not is_required(t)} >= {
        "labels",
        "deletion_protection",
        "release_channel",
        "batch_highmem_spot",
        "batch_gpu_spot",
        "gpu_node_locations",
        "image_pusher_members",
    }
    assert attributes["environment"] == "string"
    assert attributes["recommenders"] == "list(string)"
    # The env-level declaration only forwards: the type is checked once, at the module boundary.
    for env in ENVS:
        variable = named_blocks(parse_dir(env_dir(env)), "variable")["settings"]
        assert attr(variable, "type") in ("${any}", "any")


def test_environment_is_validated() -> None:
    variable = named_blocks(parse_dir(PLATFORM_DIR), "variable")["settings"]
    conditions = [attr(v, "condition") for v in blocks(variable, "validation")]
    assert any(
        "var.settings.environment" in c and set(re.findall(r"""["'](\w+)["']""", c)) == set(ENVS)
        for c in conditions
    ), conditions


def test_env_tfvars_set_every_required_variable() -> None:
    # project_id and the organisation-specific values come from project.auto.tfvars (not committed).
    example = load_hcl(env_dir("dev") / "project.auto.tfvars.example")
    from_project_file = {k for k in example if not k.startswith("__")}
    assert "project_id" in from_project_file
    attributes = object_type_attributes(SETTINGS_TYPE, "settings")
    required_settings = {a for a, t in attributes.items() if is_required(t)}
    for env in ENVS:
        variables = named_blocks(parse_dir(env_dir(env)), "variable")
        required = {v for v, body in variables.items() if "default" not in body}
        tfvars = load_tfvars(env)
        missing = required - set(tfvars) - from_project_file
        assert not missing, f"envs/{env}/terraform.tfvars misses {sorted(missing)}"
        assert set(tfvars) == {"settings"}, f"envs/{env}/terraform.tfvars: put {sorted(tfvars)} into settings"
        settings = load_settings(env)
        missing = required_settings - set(settings)
        assert not missing, f"envs/{env}/terraform.tfvars: settings misses {sorted(missing)}"
        # Terraform silently drops attributes the object type does not declare: a misspelt one would be lost.
        unknown = set(settings) - set(attributes)
        assert not unknown, (
            f"envs/{env}/terraform.tfvars: settings has undeclared attributes {sorted(unknown)}"
        )
        assert settings["environment"] == env


def test_env_outputs_forward_every_platform_output() -> None:
    """Same names at env level: `terraform output -json` keys are what scripts/overlay.py and the overlays read."""
    platform = set(named_blocks(parse_dir(PLATFORM_DIR), "output"))
    assert {"project_id", "ksa_annotations", "cloudsql_connection_name", "digdag_ui_hostname"} <= platform
    for env in ENVS:
        outputs = named_blocks(parse_dir(env_dir(env)), "output")
        assert set(outputs) == platform, f"envs/{env} outputs differ from modules/platform's"
        for name, body in outputs.items():
            assert attr(body, "value") == f"${{module.platform.{name}}}", f"envs/{env} output {name}"


def test_gcs_backend_prefix_differs_per_env() -> None:
    prefixes = {}
    for env in ENVS:
        backends = [
            b
            for body in parse_dir(env_dir(env)).get("terraform", [])
            for entry in blocks(body, "backend")
            for kind, b in entry.items()
            if kind == "gcs"
        ]
        assert len(backends) == 1, f"envs/{env} must have exactly one gcs backend"
        prefix = attr(backends[0], "prefix")
        assert env in prefix.split("/"), f"envs/{env}: backend prefix {prefix!r} does not name the env"
        # The state bucket is organisation specific: passed with `terraform init -backend-config=bucket=...`.
        assert "bucket" not in backends[0], f"envs/{env}: state bucket is hard-coded"
        prefixes[env] = prefix
    assert len(set(prefixes.values())) == len(ENVS), f"backend prefixes collide: {prefixes}"


# --- no hard-coded project ids ----------------------------------------------------------------------------

PROJECT_KEYS = {"project", "project_id", "billing_project"}


def _literal_project_values(value: Any, path: str) -> list[str]:
    found = []
    if isinstance(value, dict):
        for key, sub in value.items():
            if key in PROJECT_KEYS:
                subs = sub if isinstance(sub, list) else [sub]
                for item in subs:
                    if isinstance(item, str) and not is_expression(item):
                        found.append(f"{path}.{key} = {item!r}")
            found += _literal_project_values(sub, f"{path}.{key}")
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            found += _literal_project_values(sub, f"{path}[{i}]")
    return found


def _committed_tf_files() -> list[Path]:
    return sorted(TF_ROOT.rglob("*.tf")) + sorted(TF_ROOT.rglob("terraform.tfvars"))


def test_project_arguments_are_never_literals() -> None:
    problems = []
    for path in _committed_tf_files():
        problems += _literal_project_values(load_hcl(path), str(path.relative_to(TF_ROOT)))
    assert not problems, "literal project ids (take them from var.project_id):\n" + "\n".join(problems)


def test_committed_tfvars_do_not_set_project_ids() -> None:
    for env in ENVS:
        tfvars = load_tfvars(env)
        assert "project_id" not in tfvars, (
            f"envs/{env}/terraform.tfvars sets project_id; use project.auto.tfvars"
        )
        assert "source_datasets" not in tfvars
        settings = load_settings(env)
        for key in ("project_id", "source_datasets", "digdag_ui_allowed_group", "digdag_ui_hostname"):
            assert key not in settings, (
                f"envs/{env}/terraform.tfvars: settings.{key} belongs in project.auto.tfvars"
            )


def test_no_project_id_patterns_in_code() -> None:
    """No projects/<literal>, <literal>.svc.id.goog or <sa>@<literal>.iam.gserviceaccount.com anywhere."""
    patterns = [
        re.compile(r"projects/(?!\$\{)[a-z][a-z0-9-]{4,28}[a-z0-9]"),
        re.compile(r"(?<![\w}])[a-z][a-z0-9-]{4,28}[a-z0-9]\.svc\.id\.goog"),
        re.compile(r"@(?!\$\{)[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com"),
    ]
    problems = []
    for path in _committed_tf_files():
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for pattern in patterns:
                if pattern.search(code):
                    problems.append(f"{path.relative_to(TF_ROOT)}:{lineno}: {line.strip()}")
    assert not problems, "\n".join(problems)


def test_project_file_examples_are_placeholders() -> None:
    for env in ENVS:
        example = load_hcl(env_dir(env) / "project.auto.tfvars.example")
        assert attr(example, "project_id").startswith("REPLACE_WITH"), (
            f"envs/{env}: example project_id is not a placeholder"
        )
        assert attr(example, "digdag_ui_allowed_group").endswith("@example.com")
    gitignore = (TF_ROOT / ".gitignore").read_text().split()
    assert "project.auto.tfvars" in gitignore


# --- deletion protection ----------------------------------------------------------------------------------


def _resolve(env: str, value: Any) -> Any:
    """Resolve a platform module argument: a literal, or var.settings.X from the env's tfvars or its optional()
    default in the settings type."""
    match = re.fullmatch(r"\$\{var\.settings\.([A-Za-z0-9_]+)\}", str(value))
    if not match:
        return value
    name = match.group(1)
    settings = load_settings(env)
    if name in settings:
        return settings[name]
    return optional_default(object_type_attributes(SETTINGS_TYPE, "settings")[name])


def test_prod_tfvars_sets_deletion_protection() -> None:
    assert load_settings("prod")["deletion_protection"] is True


@pytest.mark.parametrize("module", ["gke", "cloudsql", "bigquery"])
def test_platform_wires_deletion_protection(module: str) -> None:
    call = platform_calls()[module]
    assert attr(call, "deletion_protection") == "${var.settings.deletion_protection}", module


@pytest.mark.parametrize("module", ["gke", "cloudsql"])
def test_prod_has_deletion_protection(module: str) -> None:
    call = platform_calls()[module]
    assert _resolve("prod", attr(call, "deletion_protection")) is True, (
        f"prod {module} has no deletion protection"
    )


def test_deletion_protection_reaches_the_resources() -> None:
    gke = resources(parse_dir(MODULES_DIR / "gke"))[("google_container_cluster", "this")]
    assert var_ref(attr(gke, "deletion_protection")) == "deletion_protection"
    sql = resources(parse_dir(MODULES_DIR / "cloudsql"))[("google_sql_database_instance", "digdag")]
    assert var_ref(attr(sql, "deletion_protection")) == "deletion_protection"
    settings = blocks(sql, "settings")[0]
    assert var_ref(attr(settings, "deletion_protection_enabled")) == "deletion_protection"
    for (module, rtype, name), body in all_resources().items():
        if rtype == "google_bigquery_table":
            assert attr(body, "deletion_protection") is True, f"{module} {rtype}.{name} is not protected"


def test_deletion_protection_defaults_to_true() -> None:
    for directory in (MODULES_DIR / "gke", MODULES_DIR / "cloudsql"):
        variable = named_blocks(parse_dir(directory), "variable")["deletion_protection"]
        assert attr(variable, "default") is True, f"{directory}: deletion_protection must default to true"
    settings_type = object_type_attributes(SETTINGS_TYPE, "settings")["deletion_protection"]
    assert optional_default(settings_type) is True, f"settings.deletion_protection: {settings_type}"


# --- security settings ------------------------------------------------------------------------------------


def test_gke_cluster_is_private_and_hardened() -> None:
    parsed = parse_dir(MODULES_DIR / "gke")
    cluster = resources(parsed)[("google_container_cluster", "this")]
    private = blocks(cluster, "private_cluster_config")[0]
    assert attr(private, "enable_private_nodes") is True
    assert attr(blocks(cluster, "release_channel")[0], "channel")
    assert "svc.id.goog" in attr(blocks(cluster, "workload_identity_config")[0], "workload_pool")
    assert attr(cluster, "enable_shielded_nodes") is True
    assert attr(blocks(cluster, "network_policy")[0], "enabled") is True
    assert attr(cluster, "remove_default_node_pool") is True


def _pools() -> dict[str, dict[str, Any]]:
    return {
        name: body
        for (rtype, name), body in resources(parse_dir(MODULES_DIR / "gke")).items()
        if rtype == "google_container_node_pool"
    }


def test_node_pools() -> None:
    pools = _pools()
    assert set(pools) == {"system", "batch_standard", "batch_highmem", "batch_gpu"}
    for name, pool in pools.items():
        node_config = blocks(pool, "node_config")[0]
        metadata = attr(node_config, "metadata")
        if isinstance(metadata, str):  # a reference to local.node_metadata
            metadata = locals_of(parse_dir(MODULES_DIR / "gke"))[metadata.strip("${}").split(".", 1)[1]]
        assert metadata.get("disable-legacy-endpoints") == "true", (
            f"{name}: legacy metadata endpoints enabled"
        )
        assert attr(blocks(node_config, "workload_metadata_config")[0], "mode") == "GKE_METADATA", name
        shielded = blocks(node_config, "shielded_instance_config")[0]
        assert attr(shielded, "enable_secure_boot") is True, name
        management = blocks(pool, "management")[0]
        assert attr(management, "auto_repair") is True and attr(management, "auto_upgrade") is True, name
        labels = attr(node_config, "labels")
        assert [k.strip("${}()") for k in labels] == ["var.node_class_label"], f"{name}: label not from names"
        assert list(labels.values()) == [f"${{var.node_classes.{name.removeprefix('batch_')}}}"], name
        if name.startswith("batch_"):
            autoscaling = blocks(pool, "autoscaling")[0]
            assert attr(autoscaling, "total_min_node_count") == 0, f"{name} must scale from 0"
    standard = blocks(pools["batch_standard"], "node_config")[0]
    assert attr(standard, "spot") is True
    assert not blocks(standard, "taint")
    highmem_taints = blocks(blocks(pools["batch_highmem"], "node_config")[0], "taint")
    assert [attr(t, "key") for t in highmem_taints] == ["${var.highmem_taint.key}"]
    gpu_config = blocks(pools["batch_gpu"], "node_config")[0]
    assert [attr(t, "key") for t in blocks(gpu_config, "taint")] == ["${var.gpu_taint.key}"]
    accelerator = blocks(gpu_config, "guest_accelerator")[0]
    assert var_ref(attr(accelerator, "type")) == "gpu_type"


def test_buckets_are_locked_down() -> None:
    bucket = resources(parse_dir(MODULES_DIR / "storage"))[("google_storage_bucket", "this")]
    assert attr(bucket, "uniform_bucket_level_access") is True
    assert attr(bucket, "public_access_prevention") == "enforced"
    assert attr(blocks(bucket, "versioning")[0], "enabled") is True
    assert len(blocks(bucket, "lifecycle_rule")) >= 2


def test_bigquery_tables_are_partitioned_on_dt() -> None:
    parsed = parse_dir(MODULES_DIR / "bigquery")
    tables = {
        name: body for (rtype, name), body in resources(parsed).items() if rtype == "google_bigquery_table"
    }
    assert set(tables) == {"run_metrics", "recommendations", "related"}
    for name, table in tables.items():
        partitioning = blocks(table, "time_partitioning")[0]
        assert attr(partitioning, "field") == "dt" and attr(partitioning, "type") == "DAY", name
    assert attr(tables["recommendations"], "for_each") == "${toset(var.recommenders)}"
    assert attr(tables["related"], "for_each") == "${toset(var.recommenders)}"
    work = resources(parsed)[("google_bigquery_dataset", "work")]
    assert "work_table_expiration_days" in attr(work, "default_table_expiration_ms")


def _schema(local_name: str) -> list[tuple[str, str]]:
    columns = locals_of(parse_dir(MODULES_DIR / "bigquery"))[local_name]
    return [(c["name"], c["type"]) for c in columns]


def test_table_schemas() -> None:
    # what batch/steps/export.py writes to <table>_related
    assert [n for n, _ in _schema("related_schema")] == [
        "item_id",
        "related_item_id",
        "rank",
        "score",
        "model_version",
        "dt",
    ]
    assert _schema("recommendations_schema") == [
        ("user_id", "STRING"),
        ("item_id", "STRING"),
        ("rank", "INT64"),
        ("score", "FLOAT64"),
        ("source", "STRING"),
        ("model_version", "STRING"),
        ("dt", "DATE"),
    ]
    assert _schema("run_metrics_schema") == [
        ("pipeline", "STRING"),
        ("dt", "DATE"),
        ("step", "STRING"),
        ("metric", "STRING"),
        ("dimensions", "STRING"),
        ("value", "FLOAT64"),
        ("recorded_at", "TIMESTAMP"),
    ]


def test_cloudsql_private_backed_up_tls_only() -> None:
    sql = resources(parse_dir(MODULES_DIR / "cloudsql"))[("google_sql_database_instance", "digdag")]
    assert attr(sql, "database_version").startswith("${") or attr(sql, "database_version").startswith(
        "POSTGRES"
    )
    settings = blocks(sql, "settings")[0]
    ip = blocks(settings, "ip_configuration")[0]
    assert attr(ip, "ipv4_enabled") is False
    assert attr(ip, "ssl_mode") in {"ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"}
    backup = blocks(settings, "backup_configuration")[0]
    assert attr(backup, "enabled") is True
    assert attr(backup, "point_in_time_recovery_enabled") is True
    flags = {attr(f, "name"): attr(f, "value") for f in blocks(settings, "database_flags")}
    assert flags.get("cloudsql.iam_authentication") == "on"


# --- IAM --------------------------------------------------------------------------------------------------

FORBIDDEN_PROJECT_ROLES = {
    "roles/owner",
    "roles/editor",
    "roles/viewer",
    "roles/bigquery.admin",
    "roles/bigquery.dataEditor",
    "roles/bigquery.dataOwner",
    "roles/bigquery.dataViewer",
    "roles/storage.admin",
    "roles/storage.objectAdmin",
    "roles/storage.objectViewer",
    "roles/storage.objectCreator",
    "roles/iam.serviceAccountTokenCreator",
    "roles/iam.serviceAccountUser",
    "roles/iam.workloadIdentityUser",
    "roles/secretmanager.secretAccessor",
}


def _roles(body: dict[str, Any]) -> list[str]:
    role = attr(body, "role")
    if not is_expression(role):
        return [role]
    for_each = attr(body, "for_each", None)
    match = re.fullmatch(r"\$\{toset\(\[(.*)\]\)\}", str(for_each), re.S) if for_each else None
    if role in ("${each.value}", "${each.key}") and match:
        return re.findall(r'"([^"]+)"', match.group(1))
    return [role]  # computed: checked by the resource-type rules below


def test_no_keys_and_no_authoritative_iam() -> None:
    types = {rtype for (_, rtype, _) in all_resources()}
    assert "google_service_account_key" not in types
    for rtype in types:
        assert not rtype.endswith("_iam_policy") and not rtype.endswith("_iam_binding"), (
            f"authoritative IAM {rtype}"
        )


def test_project_level_roles_are_least_privilege() -> None:
    seen = set()
    for (module, rtype, name), body in all_resources().items():
        if rtype != "google_project_iam_member":
            continue
        for role in _roles(body):
            seen.add(role)
            assert role not in FORBIDDEN_PROJECT_ROLES, (
                f"{module} {name}: {role} must not be granted project-wide"
            )
            assert not is_expression(role), f"{module} {name}: project role must be visible in code"
            if role.startswith("roles/cloudsql."):
                condition = blocks(body, "condition")
                assert condition and "instances/" in attr(condition[0], "expression"), (
                    f"{role} not limited to Digdag's instance"
                )
    assert "roles/bigquery.jobUser" in seen


def test_data_roles_are_on_datasets_and_buckets() -> None:
    iam = resources(parse_dir(MODULES_DIR / "iam"))
    assert ("google_bigquery_dataset_iam_member", "this") in iam
    assert ("google_storage_bucket_iam_member", "this") in iam
    local = locals_of(parse_dir(MODULES_DIR / "iam"))
    for grant in local["dataset_grants"].values():
        assert grant["role"].startswith("roles/bigquery.data")
    for grant in local["bucket_grants"].values():
        assert grant["role"].startswith("roles/storage.object")
        assert grant["bucket"] in {"${var.artifacts_bucket}", "${var.exports_bucket}"}


def test_workload_identity_bindings_use_the_names_module() -> None:
    iam = resources(parse_dir(MODULES_DIR / "iam"))
    binding = iam[("google_service_account_iam_member", "workload_identity")]
    assert attr(binding, "role") == "roles/iam.workloadIdentityUser"
    assert attr(binding, "for_each") == "${var.workload_identities}"
    assert (
        attr(binding, "member")
        == "serviceAccount:${var.workload_pool}[${each.value.namespace}/${each.value.ksa}]"
    )
    account = iam[("google_service_account", "workload")]
    assert attr(account, "account_id") == "${each.value.gsa_account_id}"
    call = platform_calls()["iam"]
    assert attr(call, "workload_identities") == "${module.names.workload_identities}"
    assert attr(call, "workload_pool") == "${module.gke.workload_pool}"


def test_no_secret_values_in_code() -> None:
    types = {rtype for (_, rtype, _) in all_resources()}
    assert "google_secret_manager_secret_version" not in types
    assert "random_password" not in types
    secret = resources(parse_dir(MODULES_DIR / "secrets"))[("google_secret_manager_secret", "slack_webhook")]
    assert var_ref(attr(secret, "secret_id")) == "slack_webhook_secret_id"
    assert names_locals()["slack_webhook_secret_id"] == "slack-webhook-url"


def test_iap_group_is_a_variable() -> None:
    iap = resources(parse_dir(MODULES_DIR / "iap"))
    member = attr(iap[("google_iap_web_iam_member", "digdag_ui")], "member")
    assert member == "group:${var.allowed_group}"
    assert attr(platform_calls()["iap"], "allowed_group") == "${var.digdag_ui_allowed_group}"
    for env in ENVS:
        assert (
            attr(_module_calls(env)["platform"], "digdag_ui_allowed_group")
            == "${var.digdag_ui_allowed_group}"
        )
