"""A Python client generated from the shared v1.0 schema, as the reference broker's users make one.

The schema is split over files that ``$ref`` one another (``components.yaml``, ``kinds/…``),
and openapi-generator loses the discriminator mappings that point into other files. So the
files are first bundled into one document (every schema under one ``components/schemas``,
every ``$ref`` and mapping made local), the way the Calycopis-openapi build does before it
generates its own clients. Then openapi-generator's ``python`` generator, whose JAR ships in
the ``openapi-generator-cli`` wheel, writes the client under a temporary folder. Nothing it
writes is kept beyond the test run.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "GENERATOR",
    "SCHEMA_DIR",
    "bundle_schema",
    "generate_client",
    "generator_version",
    "missing_prerequisite",
]

SCHEMA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "schema" / "v1.0"
GENERATOR = "openapi-generator-cli"
_SCHEMA_REF = re.compile(r"^[^#]*#/components/schemas/(?P<name>[A-Za-z0-9_.-]+)$")


def generator_version() -> str:
    return importlib.metadata.version(GENERATOR)


def missing_prerequisite(schema_dir: Path = SCHEMA_DIR) -> str | None:
    """What this machine lacks to generate and run the client, or None."""
    if not (schema_dir / "execution-broker.yaml").exists():
        return f"the shared v1.0 schema is not at {schema_dir}"
    if importlib.util.find_spec("openapi_generator_cli") is None:
        return f"{GENERATOR} is not installed (pip install -e '.[test]')"
    if importlib.util.find_spec("dateutil") is None:
        return "python-dateutil, which the generated client imports, is not installed"
    if shutil.which("java") is None:
        return "no java on PATH: openapi-generator needs Java 11+ (default-jre-headless)"
    return None


def _local(ref: str) -> str:
    match = _SCHEMA_REF.match(ref)
    if match is None:
        raise ValueError(f"cannot bundle a $ref that names no schema: {ref}")
    return f"#/components/schemas/{match['name']}"


def _localise(node: Any) -> Any:
    if isinstance(node, list):
        return [_localise(item) for item in node]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            result[key] = _local(value)
        elif key == "discriminator" and isinstance(value, dict) and "mapping" in value:
            mapping = {kind: _local(target) for kind, target in value["mapping"].items()}
            result[key] = {**value, "mapping": mapping}
        else:
            result[key] = _localise(value)
    return result


def bundle_schema(schema_dir: Path = SCHEMA_DIR) -> dict[str, Any]:
    """``execution-broker.yaml`` with every schema of every file in one local ``components``."""
    schemas: dict[str, Any] = {}
    for path in sorted(schema_dir.rglob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for name, schema in ((document.get("components") or {}).get("schemas") or {}).items():
            if name in schemas and schemas[name] != schema:
                raise ValueError(f"two different schemas named {name}, one in {path}")
            schemas[name] = schema
    root = yaml.safe_load((schema_dir / "execution-broker.yaml").read_text(encoding="utf-8"))
    bundled: dict[str, Any] = _localise(root)
    bundled["components"] = {"schemas": _localise(schemas)}
    return bundled


def generate_client(folder: Path, *, package: str, schema_dir: Path = SCHEMA_DIR) -> Path:
    """Bundle the schema and generate the ``python`` client into ``folder``; its import root."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "execution-broker.bundled.yaml"
    spec.write_text(yaml.safe_dump(bundle_schema(schema_dir), sort_keys=False), encoding="utf-8")
    output = folder / "client"
    jar = importlib.resources.files("openapi_generator_cli") / "openapi-generator.jar"
    java = shutil.which("java")
    assert java is not None, "missing_prerequisite() says so first"
    command = [
        java,
        # A short run: the quick JIT tier and the serial collector halve its time on 2 cores.
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        "-jar",
        str(jar),
        "generate",
        "--generator-name",
        "python",
        "--input-spec",
        str(spec),
        "--output",
        str(output),
        "--package-name",
        package,
        # The client's code only: no generated docs or test stubs to write.
        "--global-property",
        "apiDocs=false,apiTests=false,modelDocs=false,modelTests=false",
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    if finished.returncode != 0 or not (output / package / "__init__.py").exists():
        raise RuntimeError(
            f"openapi-generator {generator_version()} failed ({finished.returncode}):\n"
            f"{finished.stdout[-4000:]}\n{finished.stderr[-4000:]}"
        )
    return output
