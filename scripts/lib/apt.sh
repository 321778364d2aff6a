# Shared by scripts/*: the Debian packages strata needs, and the one function that installs
# the missing ones.
#
# A package counts as present only when dpkg says it is installed: a program on the PATH is
# not enough (protoc without libprotobuf-dev's .proto files fails etcd-client's build).

# What `cargo build` needs beyond the Rust toolchain and gcc: protoc and the well-known
# .proto files etcd-client's API imports (google/protobuf/descriptor.proto).
STRATA_BUILD_PACKAGES=(protobuf-compiler libprotobuf-dev)

# What the tests need: the real servers and clients they talk to, and the tools they run
# (capnproto: the proto crate's test regenerates the committed Cap'n Proto code with capnp;
# systemd: systemd-analyze verifies packaging/systemd's units; groff-base: groff formats the
# generated manual pages).
STRATA_TEST_PACKAGES=(
  etcd-server capnproto containerd redis-server memcached openssl
  swift swift-proxy swift-account swift-container swift-object
  qemu-utils nbd-client libnbd-bin fio e2fsprogs util-linux coreutils tar gzip
  systemd groff-base
)

# Installs every listed Debian package that is not installed yet, then checks that each one
# is; fails naming the packages it could not install.
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    package_installed "$pkg" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "installing Debian packages: ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  local failed=()
  for pkg in "${missing[@]}"; do
    package_installed "$pkg" || failed+=("$pkg")
  done
  if ((${#failed[@]})); then
    echo "could not install Debian packages: ${failed[*]}; run 'apt-get install ${failed[*]}' and retry" >&2
    return 1
  fi
}

# True when dpkg records PACKAGE as installed (not merely known, removed or half-configured).
package_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}
