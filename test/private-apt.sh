# Sourced by the fetch-*.sh scripts: a PRIVATE apt configuration for Debian trixie and sid
# (own sources.list, state and cache under <repo>/.cache/apt/), so that packages newer than
# the system's can be downloaded and unpacked with `dpkg -x` without touching the system's
# apt sources or dpkg database. Needs CACHE set; sets APTDIR, APT_CONFIG and APTOPT and runs
# `apt-get update` once per call.
# Env: DEBIAN_MIRROR (default http://deb.debian.org/debian).

APTDIR=$CACHE/apt
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
command -v apt-get >/dev/null || { echo "apt-get is required" >&2; exit 1; }
mkdir -p "$APTDIR"/{state/lists/partial,cache/archives/partial,etc/apt.conf.d,etc/sources.list.d,etc/preferences.d,debs}
: > "$APTDIR/state/status"
cat > "$APTDIR/etc/sources.list" <<SRC
deb $MIRROR trixie main
deb $MIRROR sid main
SRC
cat > "$APTDIR/apt.conf" <<CONF
Dir::State "$APTDIR/state";
Dir::State::status "$APTDIR/state/status";
Dir::Cache "$APTDIR/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Dir::Etc::sourcelist "$APTDIR/etc/sources.list";
Dir::Etc::sourceparts "$APTDIR/etc/sources.list.d";
Dir::Etc::parts "$APTDIR/etc/apt.conf.d";
Dir::Etc::preferences "$APTDIR/etc/preferences";
Dir::Etc::preferencesparts "$APTDIR/etc/preferences.d";
Dir::Etc::trustedparts "/etc/apt/trusted.gpg.d";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";
Acquire::Check-Valid-Until "false";
Acquire::Check-Date "false";
Debug::NoLocking "true";
CONF
export APT_CONFIG=$APTDIR/apt.conf
# the sandbox user _apt cannot write under the repository; downloads run as root
APTOPT=(-o APT::Sandbox::User=root -q)
echo "apt-get update (private config: $APT_CONFIG)"
apt-get "${APTOPT[@]}" update >"$APTDIR/update.log" 2>&1 || { cat "$APTDIR/update.log" >&2; exit 1; }
