#!/usr/bin/env bash
# Initialises a SoftHSM2 token for the PKCS#11 keyrings under <var dir>/softhsm (once; re-running
# reuses it) and prints the environment that points at it, for `eval`:
#   eval "$(bash scripts/softhsm.sh var)"
# Then REDLAKE_KEYRING_<NAME>=pkcs11:token=redlake;label=redlake-<name> selects a root key in it
# (created by `manage.py vault init-keyrings`). The PIN is random, kept 0600 in the same folder.
set -euo pipefail
VAR="$(cd "${1:-var}" && pwd)"
TOKEN="${SOFTHSM_TOKEN:-redlake}"
DIR="$VAR/softhsm"
if ! command -v softhsm2-util >/dev/null 2>&1; then
  echo "echo 'softhsm2 is not installed (apt-get install softhsm2): PKCS#11 keyrings unavailable' >&2"
  exit 0
fi
mkdir -p "$DIR/tokens"
chmod 700 "$DIR"
cat > "$DIR/softhsm2.conf" <<CONF
directories.tokendir = $DIR/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$DIR/softhsm2.conf"
umask 077
[ -s "$DIR/pin" ] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/pin"
[ -s "$DIR/so-pin" ] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/so-pin"
if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label:[[:space:]]*$TOKEN[[:space:]]*\$"; then
  softhsm2-util --init-token --free --label "$TOKEN" --pin "$(cat "$DIR/pin")" --so-pin "$(cat "$DIR/so-pin")" >/dev/null
fi
echo "export SOFTHSM2_CONF='$DIR/softhsm2.conf'"
echo "export REDLAKE_HSM_PIN_FILE='$DIR/pin'"
echo "export REDLAKE_PKCS11_MODULE='${REDLAKE_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}'"
