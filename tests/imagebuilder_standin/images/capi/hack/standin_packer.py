"""Play packer's part for the stand-in image-builder: merge the var files as packer would (last wins),
refuse an existing output directory as packer does, and write a small real qcow2 where image-builder
puts its artifact. `{{env `NAME`}}` in a value is replaced by the variable, as packer's template engine
does (empty when unset). It also writes `variables.json` beside the image (what the build received), counts
builds in `output/.builds`, prints its environment to the log, and fails when STANDIN_FAIL is set."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

os_file, *var_files = sys.argv[1:]
variables = {}
for path in ["packer/config/kubernetes.json", os_file, *var_files]:
    variables.update(json.loads(Path(path).read_text()))
env_reference = re.compile(r"\{\{\s*env\s+`([^`]*)`\s*\}\}")
for key, value in variables.items():
    if isinstance(value, str):
        variables[key] = env_reference.sub(lambda m: os.environ.get(m.group(1), ""), value)
name = f"{variables['build_name']}-kube-{variables['kubernetes_semver']}"
output = Path("output") / name

print("==> qemu: stand-in packer build of", name, flush=True)
for key, value in sorted(os.environ.items()):
    print(f"    env {key}={value}")
if os.environ.get("STANDIN_FAIL"):
    print("==> qemu: Build 'qemu' errored after 1 second: ssh timeout", flush=True)
    sys.exit(1)
if output.exists():
    print(f"Build 'qemu' errored: Output directory exists: {output}", flush=True)
    sys.exit(1)
output.mkdir(parents=True)
raw = output / "disk.raw"
with raw.open("wb") as disk:
    disk.truncate(16 << 20)
    disk.write(json.dumps(variables, sort_keys=True).encode() * 64)
subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(output / name)], check=True)
raw.unlink()
(output / "variables.json").write_text(json.dumps(variables, indent=2, sort_keys=True))
builds = Path("output") / ".builds"
builds.write_text(str(int(builds.read_text()) + 1 if builds.exists() else 1))
print(f"==> qemu: VM files in directory: ./output/{name}", flush=True)
