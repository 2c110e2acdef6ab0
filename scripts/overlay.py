#!/usr/bin/env python3
"""Edit a Kustomize overlay without yq or the kustomize binary (kubectl's embedded kustomize cannot `edit`).

  overlay.py pin-image ENV NAME REF
      Set image NAME in k8s/overlays/ENV to REF: "repo/name@sha256:..." pins the digest (newName + digest),
      "repo/name:tag" sets newName + newTag. Line-based: comments and layout of the file are kept.
  overlay.py configure ENV TERRAFORM_OUTPUT_JSON
      Write k8s/overlays/ENV/deployment.env from `terraform -chdir=terraform/envs/ENV output -json` and point
      the overlay's images at the env's Artifact Registry repository (keeping their tags/digests).

Errors are one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS = ROOT / "k8s" / "overlays"
DIGEST = re.compile(r"^(?P<name>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")
TAG = re.compile(r"^(?P<name>[^@\s]+?):(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")


class OverlayError(Exception):
    pass


def kustomization(env: str, root: Path = OVERLAYS) -> Path:
    path = root / env / "kustomization.yaml"
    if not path.is_file():
        raise OverlayError(f"{path}: no such overlay")
    return path


def _image_block(lines: list[str], name: str) -> tuple[int, int, str]:
    """(first, end) line indexes of the `- name: NAME` entry under `images:`, and its field indentation."""
    try:
        start = next(i for i, line in enumerate(lines) if re.match(r"^images:\s*$", line))
    except StopIteration:
        raise OverlayError("the overlay has no images: section") from None
    i = start + 1
    while i < len(lines):
        line = lines[i]
        if line.strip() and not line.startswith((" ", "-")):
            break  # next top-level key
        m = re.match(r"^(\s*)- name:\s*(\S+)\s*$", line)
        if m and m.group(2) == name:
            indent = m.group(1) + "  "
            end = i + 1
            while (
                end < len(lines)
                and lines[end].startswith(indent)
                and not lines[end].lstrip().startswith("- ")
            ):
                end += 1
            return i, end, indent
        i += 1
    raise OverlayError(f"image {name!r} is not in the overlay's images: section")


def set_image(text: str, name: str, ref: str) -> str:
    m = DIGEST.match(ref)
    if m:
        name_only = re.sub(r":[^/:]+$", "", m.group("name"))  # repo/name:tag@sha256:... -> repo/name
        fields = {"newName": name_only, "digest": m.group("digest")}
    else:
        m = TAG.match(ref)
        if not m:
            raise OverlayError(f"{ref!r} is neither repo/name@sha256:<64 hex> nor repo/name:tag")
        fields = {"newName": m.group("name"), "newTag": m.group("tag")}
    lines = text.splitlines()
    first, end, indent = _image_block(lines, name)
    kept = [line for line in lines[first + 1 : end] if not re.match(r"^\s*(newName|newTag|digest):", line)]
    new = [f"{indent}{k}: {v}" for k, v in fields.items()]
    lines[first + 1 : end] = new + kept
    return "\n".join(lines) + "\n"


def set_repository(text: str, repository: str) -> str:
    """Point every image of ours (…/reco/<name>) at REGION-docker.pkg.dev/PROJECT/reco."""
    return re.sub(
        r"(newName:\s*)\S+/reco/(reco-batch|digdag-worker)\b",
        lambda m: f"{m.group(1)}{repository.rstrip('/')}/{m.group(2)}",
        text,
    )


def deployment_env(outputs: dict) -> str:
    def value(key: str):
        if key not in outputs:
            raise OverlayError(f"terraform output has no {key!r}")
        v = outputs[key]
        return v["value"] if isinstance(v, dict) and "value" in v else v

    project = value("project_id")
    annotations = value("ksa_annotations")
    domains = {str(email).partition("@")[2] for email in annotations.values()}
    if len(domains) != 1:
        raise OverlayError(f"ksa_annotations name more than one GSA domain: {sorted(domains)}")
    return (
        "# Written by scripts/overlay.py configure from `terraform output -json`; do not edit by hand.\n"
        f"project_id={project}\n"
        f"gsa_domain={domains.pop()}\n"
        f"cloudsql_connection_name={value('cloudsql_connection_name')}\n"
        f"digdag_ui_static_ip_name={value('digdag_ui_static_ip_name')}\n"
        f"digdag_ui_ssl_policy_name={value('digdag_ui_ssl_policy_name')}\n"
        f"digdag_ui_hostname={value('digdag_ui_hostname')}\n"
    )


def main(argv: list[str] | None = None, root: Path = OVERLAYS) -> int:
    parser = argparse.ArgumentParser(prog="overlay.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pin-image")
    p.add_argument("env")
    p.add_argument("name", help="image name as the base writes it: reco-batch or digdag-worker")
    p.add_argument("ref", help="repo/name@sha256:... (a digest) or repo/name:tag")
    p = sub.add_parser("configure")
    p.add_argument("env")
    p.add_argument("terraform_output", help="file with `terraform output -json` of the env ('-' for stdin)")
    args = parser.parse_args(argv)
    try:
        path = kustomization(args.env, root)
        if args.cmd == "pin-image":
            path.write_text(set_image(path.read_text(), args.name, args.ref))
            print(f"{path.relative_to(root.parent.parent)}: {args.name} -> {args.ref}")
        else:
            raw = (
                sys.stdin.read() if args.terraform_output == "-" else Path(args.terraform_output).read_text()
            )
            outputs = json.loads(raw)
            (path.parent / "deployment.env").write_text(deployment_env(outputs))
            repo = outputs.get("image_repository", {})
            repo = repo.get("value") if isinstance(repo, dict) else repo
            if repo:
                path.write_text(set_repository(path.read_text(), repo))
            print(
                f"{path.parent.relative_to(root.parent.parent)}: deployment.env and image repository written"
            )
    except (OverlayError, OSError, ValueError) as e:
        print(f"overlay.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
