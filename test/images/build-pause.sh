#!/usr/bin/env bash
# Build the offline pod-sandbox ("pause") image of the CRI e2e test: an OCI
# image-layout tarball (what `ctr images import` accepts) holding Debian's static
# busybox, whose entrypoint sleeps forever and exits 0 on SIGTERM/SIGINT.
#
#   test/images/build-pause.sh OUT_TAR
#
# Deterministic like build-image.sh (fixed mtimes/owners, sorted entries, gzip
# without timestamp). Nothing is pulled.
# Env: BUSYBOX (default /usr/bin/busybox, from the busybox-static package),
#      IMAGE_NAME (default docker.io/library/scribe-pause:3.9).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_TAR" >&2
  exit 2
fi
OUT=$1
BUSYBOX=${BUSYBOX:-/usr/bin/busybox}
IMAGE_NAME=${IMAGE_NAME:-docker.io/library/scribe-pause:3.9}

if [ ! -x "$BUSYBOX" ]; then
  echo "build-pause.sh: $BUSYBOX not found: apt-get install busybox-static" >&2
  exit 1
fi
if ! command -v python3 >/dev/null; then
  echo "build-pause.sh: python3 is required" >&2
  exit 1
fi
if command -v file >/dev/null && ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
  echo "build-pause.sh: $BUSYBOX is not statically linked (need busybox-static)" >&2
  exit 1
fi

exec python3 - "$OUT" "$BUSYBOX" "$IMAGE_NAME" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile, tempfile

out, busybox, image_name = sys.argv[1], sys.argv[2], sys.argv[3]
with open(busybox, "rb") as f:
    bb = f.read()

def entry(name, kind, mode, data=b"", link=""):
    ti = tarfile.TarInfo(name)
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mode = mode
    ti.type = kind
    if kind == tarfile.SYMTYPE:
        ti.linkname = link
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
    return ti, data

entries = [entry(d, tarfile.DIRTYPE, m) for d, m in
           [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o555),
            ("sys", 0o555), ("tmp", 0o1777), ("run", 0o755)]]
entries.append(entry("bin/busybox", tarfile.REGTYPE, 0o755, bb))
for a in ["sh", "sleep"]:
    entries.append(entry("bin/" + a, tarfile.SYMTYPE, 0o777, link="busybox"))
entries.append(entry("etc/passwd", tarfile.REGTYPE, 0o644, b"root:x:0:0:root:/:/bin/sh\n"))
entries.append(entry("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\n"))
entries.sort(key=lambda e: e[0].name)

def make_tar(items):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in items:
            t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()

layer = make_tar(entries)
gzbuf = io.BytesIO()
with gzip.GzipFile(filename="", mode="wb", fileobj=gzbuf, mtime=0, compresslevel=9) as g:
    g.write(layer)
layer_gz = gzbuf.getvalue()

def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()

def js(o):
    return json.dumps(o, sort_keys=True, separators=(",", ":")).encode()

config = {
    "architecture": "amd64",
    "os": "linux",
    "created": "1970-01-01T00:00:00Z",
    "config": {
        "Env": ["PATH=/bin"],
        # pid 1 ignores signals it has no handler for: trap them, sleep in the
        # background so that the trap runs at once.
        "Entrypoint": ["/bin/sh", "-c",
                       "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"],
        "WorkingDir": "/",
    },
    "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
    "history": [{"created": "1970-01-01T00:00:00Z",
                 "created_by": "scribe test/images/build-pause.sh (busybox-static)"}],
}
config_b = js(config)
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": sha(config_b), "size": len(config_b)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha(layer_gz), "size": len(layer_gz)}],
}
manifest_b = js(manifest)
tag = image_name.rsplit(":", 1)[1] if ":" in image_name.rsplit("/", 1)[-1] else "latest"
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha(manifest_b), "size": len(manifest_b),
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {
            "io.containerd.image.name": image_name,
            "org.opencontainers.image.ref.name": tag,
        },
    }],
}
index_b = js(index)
files = [("oci-layout", js({"imageLayoutVersion": "1.0.0"})), ("index.json", js(index))]
for b in (config_b, manifest_b, layer_gz):
    files.append(("blobs/sha256/" + sha(b)[7:], b))
outer = [entry("blobs", tarfile.DIRTYPE, 0o755), entry("blobs/sha256", tarfile.DIRTYPE, 0o755)]
outer += [entry(n, tarfile.REGTYPE, 0o644, b) for n, b in files]
outer.sort(key=lambda e: e[0].name)
data = make_tar(outer)

d = os.path.dirname(os.path.abspath(out))
os.makedirs(d, exist_ok=True)
fd, tmp = tempfile.mkstemp(dir=d, prefix=".build-pause.")
with os.fdopen(fd, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o644)
os.rename(tmp, out)
print(sha(manifest_b))
PY
