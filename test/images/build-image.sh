#!/usr/bin/env bash
# Build the offline e2e test image: an OCI image-layout tarball (what
# `ctr images import` accepts) holding Debian's static busybox.
#
#   test/images/build-image.sh OUT_TAR
#
# The output is deterministic: fixed mtimes/owners, sorted entries, gzip
# without timestamp, so the same busybox binary gives the same digest.
# Env: BUSYBOX (default /usr/bin/busybox, from the busybox-static package),
#      IMAGE_NAME (default docker.io/library/scribe-busybox:latest),
#      IMAGE_ENTRYPOINT (a JSON array: the image's Entrypoint instead of Cmd ["sh"];
#      build-pause.sh uses it for the pod-sandbox image).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_TAR" >&2
  exit 2
fi
OUT=$1
BUSYBOX=${BUSYBOX:-/usr/bin/busybox}
IMAGE_NAME=${IMAGE_NAME:-docker.io/library/scribe-busybox:latest}

if [ ! -x "$BUSYBOX" ]; then
  echo "build-image.sh: $BUSYBOX not found: apt-get install busybox-static" >&2
  exit 1
fi
if ! command -v python3 >/dev/null; then
  echo "build-image.sh: python3 is required" >&2
  exit 1
fi
# A dynamically linked busybox would not run in the image (no libc there).
if command -v file >/dev/null && ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
  echo "build-image.sh: $BUSYBOX is not statically linked (need busybox-static)" >&2
  exit 1
fi

exec python3 - "$OUT" "$BUSYBOX" "$IMAGE_NAME" "${IMAGE_ENTRYPOINT:-}" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile, tempfile

out, busybox, image_name = sys.argv[1], sys.argv[2], sys.argv[3]
entrypoint = json.loads(sys.argv[4]) if sys.argv[4] else None
MTIME = 0

# Applets linked into /bin. The required ones first; every applet of this
# busybox build that is not already present is linked too.
REQUIRED = ["sh", "echo", "cat", "sleep", "true", "false", "ls", "head", "seq",
            "yes", "dd", "wc", "stty", "id", "env", "kill", "ps", "mkdir", "tr",
            "printf"]
EXTRA = ["ash", "tail", "grep", "sed", "awk", "test", "[", "touch", "rm", "cp",
         "mv", "ln", "pwd", "date", "cut", "sort", "uniq", "tee", "hostname",
         "uname", "mount", "umount", "stat", "readlink", "basename", "dirname",
         "xargs", "find", "timeout", "nproc", "chmod", "chown", "mkfifo",
         "od", "hexdump", "base64", "md5sum", "sha256sum", "usleep", "pidof",
         "tty", "which", "expr", "whoami", "top", "free", "df", "du", "rmdir"]

# The applets must actually exist in this busybox build.
import subprocess
have = set(subprocess.run([busybox, "--list"], capture_output=True, text=True,
                          check=True).stdout.split())
missing = [a for a in REQUIRED if a not in have]
if missing:
    sys.exit("build-image.sh: busybox lacks applets: " + " ".join(missing))

with open(busybox, "rb") as f:
    bb = f.read()

def entry(name, kind, mode, data=b"", link=""):
    ti = tarfile.TarInfo(name)
    ti.mtime = MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mode = mode
    ti.type = kind
    if kind == tarfile.SYMTYPE:
        ti.linkname = link
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
    return ti, data

entries = []
for d, mode in [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o555),
                ("root", 0o700), ("sys", 0o555), ("tmp", 0o1777), ("usr", 0o755),
                ("usr/bin", 0o755), ("usr/sbin", 0o755), ("sbin", 0o755),
                ("var", 0o755), ("var/tmp", 0o1777), ("run", 0o755)]:
    entries.append(entry(d, tarfile.DIRTYPE, mode))
entries.append(entry("bin/busybox", tarfile.REGTYPE, 0o755, bb))
for a in sorted(set(REQUIRED) | (set(EXTRA) & have)):
    entries.append(entry("bin/" + a, tarfile.SYMTYPE, 0o777, link="busybox"))
passwd = (b"root:x:0:0:root:/root:/bin/sh\n"
          b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
group = b"root:x:0:\nnogroup:x:65534:\n"
entries.append(entry("etc/passwd", tarfile.REGTYPE, 0o644, passwd))
entries.append(entry("etc/group", tarfile.REGTYPE, 0o644, group))
entries.append(entry("etc/hostname", tarfile.REGTYPE, 0o644, b"scribe\n"))
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
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        **({"Entrypoint": entrypoint} if entrypoint else {"Cmd": ["sh"]}),
        "WorkingDir": "/",
    },
    "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
    "history": [{"created": "1970-01-01T00:00:00Z",
                 "created_by": "scribe test/images/build-image.sh (busybox-static)"}],
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
            # containerd's importer prefers this one and takes it verbatim
            "io.containerd.image.name": image_name,
            "org.opencontainers.image.ref.name": tag,
        },
    }],
}
index_b = js(index)
layout_b = js({"imageLayoutVersion": "1.0.0"})

files = [("oci-layout", layout_b), ("index.json", index_b)]
for b in (config_b, manifest_b, layer_gz):
    files.append(("blobs/sha256/" + sha(b)[7:], b))
outer = [entry("blobs", tarfile.DIRTYPE, 0o755), entry("blobs/sha256", tarfile.DIRTYPE, 0o755)]
outer += [entry(n, tarfile.REGTYPE, 0o644, b) for n, b in files]
outer.sort(key=lambda e: e[0].name)
data = make_tar(outer)

d = os.path.dirname(os.path.abspath(out))
os.makedirs(d, exist_ok=True)
fd, tmp = tempfile.mkstemp(dir=d, prefix=".build-image.")
with os.fdopen(fd, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o644)
os.rename(tmp, out)  # atomic: concurrent readers see old or new, never half
print(sha(manifest_b))
PY
