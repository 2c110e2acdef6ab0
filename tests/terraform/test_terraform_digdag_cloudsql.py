"""Both Digdag identities reach Cloud SQL: conditional Cloud SQL roles and an IAM database user each.

k8s/base runs two Digdag processes against the same database, each through the Cloud SQL Auth Proxy with
--auto-iam-authn and `-X database.user=<ksa>@PROJECT.iam`: digdag-server and digdag-worker. Each GSA therefore
needs roles/cloudsql.client + roles/cloudsql.instanceUser (limited to the Digdag instance) and a
CLOUD_IAM_SERVICE_ACCOUNT user; the batch identity needs neither.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from tf_helpers import (
    K8S_BASE,
    MODULES_DIR,
    attr,
    blocks,
    named_blocks,
    names_locals,
    parse_dir,
    platform_calls,
    resources,
)

DIGDAG_IDENTITIES = ("digdag_server", "digdag_worker")
CLOUDSQL_ROLES = {"roles/cloudsql.client", "roles/cloudsql.instanceUser"}


def _literal_roles(body: dict[str, Any]) -> set[str]:
    role = attr(body, "role")
    if not role.startswith("${"):
        return {role}
    assert role in ("${each.value}", "${each.key}"), f"computed role {role!r}: cannot be checked"
    for_each = attr(body, "for_each")
    match = re.fullmatch(r"\$\{toset\(\[(.*)\]\)\}", str(for_each), re.S)
    assert match, f"for_each {for_each!r} is not a literal toset([...])"
    return set(re.findall(r"""["']([^"']+)["']""", match.group(1)))


def _member_identity(body: dict[str, Any]) -> str | None:
    match = re.fullmatch(r"""\$\{local\.members\[["'](\w+)["']\]\}""", attr(body, "member"))
    return match.group(1) if match else None


def _cloudsql_grants() -> dict[str, list[tuple[set[str], str | None]]]:
    """identity -> [(roles, condition expression)] of the project-level Cloud SQL grants in modules/iam."""
    grants: dict[str, list[tuple[set[str], str | None]]] = {}
    iam = resources(parse_dir(MODULES_DIR / "iam"), "google_project_iam_member")
    for (_, _name), body in iam.items():
        roles = {r for r in _literal_roles(body) if r.startswith("roles/cloudsql.")}
        if not roles:
            continue
        conditions = blocks(body, "condition")
        expression = attr(conditions[0], "expression").replace('\\"', '"') if conditions else None
        grants.setdefault(_member_identity(body) or "?", []).append((roles, expression))
    return grants


def test_both_digdag_identities_have_conditional_cloudsql_roles() -> None:
    grants = _cloudsql_grants()
    assert set(grants) == set(DIGDAG_IDENTITIES), f"Cloud SQL roles granted to {sorted(grants)}"
    expressions = set()
    for identity in DIGDAG_IDENTITIES:
        roles = set().union(*(r for r, _ in grants[identity]))
        assert roles == CLOUDSQL_ROLES, f"{identity}: {sorted(roles)}"
        for _, expression in grants[identity]:
            assert expression, f"{identity}: Cloud SQL role without an IAM condition"
            assert (
                'resource.name == "projects/${var.project_id}/instances/${var.cloudsql_instance_name}"'
                in (expression)
            ), f"{identity}: condition not limited to the Digdag instance: {expression}"
            assert 'resource.service == "sqladmin.googleapis.com"' in expression, identity
            expressions.add(expression)
    assert len(expressions) == 1, f"the Digdag identities have different conditions: {expressions}"


def test_both_digdag_identities_are_iam_database_users() -> None:
    users = resources(parse_dir(MODULES_DIR / "cloudsql"), "google_sql_user")
    assert {name for _, name in users} == set(DIGDAG_IDENTITIES)
    for identity in DIGDAG_IDENTITIES:
        user = users[("google_sql_user", identity)]
        assert attr(user, "type") == "CLOUD_IAM_SERVICE_ACCOUNT", identity
        assert attr(user, "instance") == "${google_sql_database_instance.digdag.name}", identity
        name = attr(user, "name").replace("'", '"').replace(", ", ",")
        assert name == f'${{trimsuffix(var.{identity}_service_account_email,".gserviceaccount.com")}}', name
    # every environment (through modules/platform, which every env calls: test_terraform_layout) passes each
    # identity's own GSA email
    call = platform_calls()["cloudsql"]
    for identity in DIGDAG_IDENTITIES:
        passed = attr(call, f"{identity}_service_account_email").replace("'", '"')
        assert passed == f'${{module.iam.service_account_emails["{identity}"]}}', (
            f"modules/platform: {passed}"
        )
    outputs = named_blocks(parse_dir(MODULES_DIR / "cloudsql"), "output")
    iam_users = str(attr(outputs["iam_users"], "value"))
    assert all(f"google_sql_user.{i}.name" in iam_users for i in DIGDAG_IDENTITIES), iam_users


def test_k8s_database_users_are_the_terraform_iam_users() -> None:
    """`-X database.user=$(DB_USER)` of both Deployments is `<gsa account id>@PROJECT.iam`, the users above."""
    identities = names_locals()["workload_identities"]
    checked = 0
    for path in sorted((K8S_BASE / "digdag").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "Deployment":
                continue
            pod = doc["spec"]["template"]["spec"]
            wi = next(w for k, w in identities.items() if w["ksa"] == pod["serviceAccountName"])
            identity = next(k for k, w in identities.items() if w is wi)
            assert identity in DIGDAG_IDENTITIES, f"{path}: {identity} talks to Cloud SQL"
            digdag = next(c for c in pod["containers"] if c["name"] == "digdag")
            env = {e["name"]: e.get("value") for e in digdag.get("env", [])}
            assert env["DB_USER"] == f"{wi['gsa_account_id']}@$(GCP_PROJECT).iam", f"{path}: {env['DB_USER']}"
            assert "database.user=$(DB_USER)" in digdag["args"], path
            proxy = next(c for c in pod.get("initContainers", []) if c["name"] == "cloud-sql-proxy")
            assert "--auto-iam-authn" in proxy["args"], path
            checked += 1
    assert checked == 2, "expected the digdag-server and digdag-worker Deployments under k8s/base/digdag"
