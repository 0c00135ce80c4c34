#!/usr/bin/env bash
# Copy pinned front-end assets from node_modules into static/vendor/ and
# print their Subresource Integrity (SRI) sha384 hashes.
#
# Provenance record: the vendored files are committed, so the app never needs
# npm at run time. Re-run this after changing a version in package.json:
#
#   npm ci && bash scripts/vendor_static.sh
#
# then update static/vendor/README.md and the templates if file names changed.
# static/vendor/sri.json is rewritten by this script.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

HTMX_VERSION="2.0.11"
PICO_VERSION="2.1.1"

nm="node_modules"
vendor="static/vendor"

installed_version() {
  # $1 = package directory under node_modules
  node -p "require('./${nm}/$1/package.json').version"
}

check_version() {
  # $1 = package, $2 = expected version
  local got
  got="$(installed_version "$1")"
  if [[ "$got" != "$2" ]]; then
    echo "error: ${nm}/$1 is ${got}, expected $2 (run 'npm ci')" >&2
    exit 1
  fi
}

sri() {
  printf 'sha384-%s' "$(openssl dgst -sha384 -binary "$1" | openssl base64 -A)"
}

check_version "htmx.org" "$HTMX_VERSION"
check_version "@picocss/pico" "$PICO_VERSION"

mkdir -p "$vendor"

htmx_out="htmx-${HTMX_VERSION}.min.js"
pico_out="pico-${PICO_VERSION}.min.css"

cp "${nm}/htmx.org/dist/htmx.min.js" "${vendor}/${htmx_out}"
cp "${nm}/@picocss/pico/css/pico.min.css" "${vendor}/${pico_out}"

htmx_sri="$(sri "${vendor}/${htmx_out}")"
pico_sri="$(sri "${vendor}/${pico_out}")"

cat > "${vendor}/sri.json" <<JSON
{
  "${htmx_out}": "${htmx_sri}",
  "${pico_out}": "${pico_sri}"
}
JSON

echo "${vendor}/${htmx_out}  ${htmx_sri}"
echo "${vendor}/${pico_out}  ${pico_sri}"
