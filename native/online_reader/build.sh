#!/usr/bin/env bash
# Builds atlas-online-reader into $1 (default build/native) from the committed protos.
# Needs a C++17 compiler and the Debian packages libgrpc++-dev protobuf-compiler-grpc
# liblmdb-dev libssl-dev pkg-config; as root it installs them when missing. Exits 1 with a
# message when it cannot build: the data service then serves reads from Python only.
set -euo pipefail
out=${1:-build/native}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
pkgs="libgrpc++-dev protobuf-compiler-grpc liblmdb-dev libssl-dev pkg-config"
have() { command -v protoc >/dev/null && command -v grpc_cpp_plugin >/dev/null \
  && pkg-config --exists grpc++ protobuf lmdb libcrypto 2>/dev/null; }
if ! have; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "online reader: installing $pkgs" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkgs >/dev/null
  fi
  have || { echo "online reader: not built (needs $pkgs)" >&2; exit 1; }
fi
# google/rpc/*.proto (status details) ship with the googleapis-common-protos wheel.
rpc_protos=$("${PYTHON:-python3}" -c 'import google.rpc.status_pb2 as m, os; print(os.path.dirname(os.path.dirname(os.path.dirname(m.__file__))))')
gen="$out/gen"
fresh="$out/gen.new"
rm -rf "$fresh" && mkdir -p "$gen" "$fresh"
protoc -I "$root/protos" -I "$rpc_protos" --cpp_out="$fresh" --grpc_out="$fresh" \
  --plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" \
  atlas/data/v1/online_service.proto atlas/data/v1/online_reader_service.proto
protoc -I "$root/protos" -I "$rpc_protos" --cpp_out="$fresh" \
  atlas/data/v1/data_service.proto atlas/common/v1/common.proto \
  google/rpc/status.proto google/rpc/error_details.proto
# Generated code compiles in a minute: keep objects whose source did not change.
cflags="-std=c++17 -O2 -DNDEBUG -I $gen $(pkg-config --cflags grpc++ protobuf lmdb libcrypto)"
objs=()
while IFS= read -r src; do
  rel=${src#"$fresh"/}
  if ! cmp -s "$src" "$gen/$rel"; then
    mkdir -p "$(dirname "$gen/$rel")"
    cp "$src" "$gen/$rel"
    [[ $rel == *.h ]] || rm -f "$gen/$rel.o"
  fi
done < <(find "$fresh" -type f)
rm -rf "$fresh"
while IFS= read -r src; do
  [ -f "$src.o" ] || g++ $cflags -c "$src" -o "$src.o"
  objs+=("$src.o")
done < <(find "$gen" -name '*.cc')
# shellcheck disable=SC2086
g++ $cflags -o "$out/atlas-online-reader.tmp" "$here/online_reader.cc" "${objs[@]}" \
  $(pkg-config --libs grpc++ protobuf lmdb libcrypto) -lpthread
mv "$out/atlas-online-reader.tmp" "$out/atlas-online-reader"
echo "online reader: built $out/atlas-online-reader" >&2
