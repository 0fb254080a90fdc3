#!/usr/bin/env bash
# mutants.sh - do the audit tests notice a broken verifier? Applies one change at a time to
# src/audit/verify.c and record.c (a copy: the tree is untouched), builds tests/audit/test_audit.c
# against it, and expects the test to FAIL for every mutant. Not a CTest test (no test_
# prefix): run it by hand after changing the verifier.
#
#   tests/audit/mutants.sh            (needs gcc, libcrypto and jansson headers: scripts/deps.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/sov-mutants.XXXXXX)
trap 'rm -rf "$work"' EXIT

# file | what the mutant does | sed expression
mutants=(
  "verify.c|an unintact record is accepted|s/if (!c->intact) {/if (0) {/"
  "verify.c|a gap in the numbers is not a deletion|s/if (c->seq > want)$/if (0)/"
  "verify.c|swaps are not recognised|s/same(c->prev, next->hash) \&\& next->intact/0/"
  "verify.c|the insertion of the previous record is missed|s/v->have_L2 \&\& same(c->prev, v->L2)/0/"
  "verify.c|a head that does not match is ignored|s/if (same(h->hash, c->hash)) {/if (1) {/"
  "verify.c|a head past the end is ignored|s/if (v->heads\[i\].seq > last) {/if (0) {/"
  "verify.c|the chain row is not compared|s/if (claim->seq > last)$/if (0)/"
  "verify.c|a bad head signature is trusted|s/if (c == AUDIT_HEAD_OK) {/if (c != AUDIT_HEAD_UNKNOWN_KEY) {/"
  "verify.c|the first problem is the last found|s/at < first_at ||/1 ||/"
  "record.c|the link hash ignores prev|s/sha256(LINK_TAG, sizeof LINK_TAG - 1, prev,/sha256(LINK_TAG, sizeof LINK_TAG - 1, \"\", 0 * /"
  "record.c|a field is left out of the encoding|s/    put_i64(w, r->cached_tokens);//"
  "record.c|kept text is not checked|s/if (!text_matches(text, hex)) {/if (0) {/"
)

build() { # dir -> builds dir/test_audit from dir's sources
  gcc -std=c17 -D_GNU_SOURCE -O1 -w -I"$1/src" -I"$here/include" -I"$here/tests" -o "$1/test_audit" \
    "$here/tests/audit/test_audit.c" "$1"/src/audit/*.c "$here/src/core/status.c" -ljansson -lcrypto
}

cp -r "$here/src" "$work/orig"
mkdir -p "$work/o" && mv "$work/orig" "$work/o/src"
build "$work/o"
export SOV_TEST_DATA=$here/tests SOV_TEST_TMP=$work/tmp
"$work/o/test_audit" >/dev/null 2>&1 || { echo "mutants.sh: the unmutated test fails" >&2; exit 1; }
survived=0
for m in "${mutants[@]}"; do
  IFS='|' read -r file what expr <<<"$m"
  d=$work/m
  rm -rf "$d" && mkdir -p "$d" && cp -r "$work/o/src" "$d/src"
  sed -i "$expr" "$d/src/audit/$file"
  if cmp -s "$d/src/audit/$file" "$work/o/src/audit/$file"; then
    echo "NOT APPLIED  $file: $what"; survived=$((survived + 1)); continue
  fi
  build "$d"
  if "$d/test_audit" >/dev/null 2>&1; then
    echo "SURVIVED     $file: $what"; survived=$((survived + 1))
  else
    echo "killed       $file: $what"
  fi
done
echo "$survived of ${#mutants[@]} mutants survived"
[ "$survived" -eq 0 ]
