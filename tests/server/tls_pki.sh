#!/usr/bin/env bash
# tls_pki.sh - a throw-away PKI for the TLS tests and bench/tls.sh, made with the openssl
# command line (EC P-256 keys). Not a test itself (no test_ prefix).
#
#   tests/server/tls_pki.sh DIR
#
# Writes into DIR (created; existing files are replaced):
#   ca.pem                      the server CA (clients trust it with --cacert)
#   server.pem, server.key      localhost / 127.0.0.1 / ::1, signed by ca.pem, 10 years
#   expired.pem, expired.key    the same names, valid 2020-01-01 .. 2021-01-01
#   future.pem, future.key      the same names, valid from 2090
#   wrongca.pem                 a self-signed CA unrelated to anything here
#   client-ca.pem               the CA of client certificates (--tls-client-ca)
#   client.pem, client.key      CN=radiology,O=Hospital, signed by client-ca.pem
#   client2.pem, client2.key    CN=cardiology,O=Hospital, signed by client-ca.pem
#   client-expired.pem/.key     CN=radiology,O=Hospital, signed by client-ca.pem, expired
#   client-eku.pem/.key         CN=radiology,O=Hospital, signed by client-ca.pem, for server
#                               authentication only (extended key usage)
#   rogue.pem, rogue.key        CN=radiology,O=Hospital, signed by rogue-ca.pem (another CA)
#   encrypted.key               server.key encrypted with the passphrase "secret"
# `openssl ca` is used for every signature because it is what can set validity dates in
# the past (OpenSSL 3.0's x509 -req cannot); -preserveDN keeps the request's name order,
# so "/O=Hospital/CN=radiology" reads "CN=radiology,O=Hospital" in RFC 2253.
set -euo pipefail
dir=${1:?usage: tls_pki.sh DIR}
mkdir -p "$dir"
cd "$dir"
rm -rf db && mkdir -p db/new

cat >ca.cnf <<'EOF'
[ca]
default_ca = ca_default
[ca_default]
database = db/index.txt
new_certs_dir = db/new
serial = db/serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
[policy_any]
commonName = supplied
organizationName = optional
[v3_ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
[client]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
EOF

# newkey NAME: an EC P-256 key in NAME.key
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; chmod 600 "$1.key"; }

# selfca NAME SUBJECT: a self-signed CA in NAME.pem
selfca() {
  newkey "$1"
  openssl req -new -x509 -key "$1.key" -subj "$2" -days 3650 -out "$1.pem" \
    -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# sign CA NAME SUBJECT EXT [openssl ca date options...]: NAME.key's certificate signed by CA
sign() {
  local ca=$1 name=$2 subject=$3 ext=$4
  shift 4
  [ -f "$name.key" ] || newkey "$name"
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr" 2>/dev/null
  : >db/index.txt
  openssl rand -hex 16 >db/serial
  openssl ca -batch -config ca.cnf -cert "$ca.pem" -keyfile "$ca.key" -extensions "$ext" \
    -in "$name.csr" -out "$name.pem" -notext -preserveDN "$@" 2>db/last.err || { cat db/last.err >&2; exit 1; }
  rm -f "$name.csr"
}

selfca ca "/O=sov tests/CN=sov test server CA"
selfca wrongca "/O=elsewhere/CN=unrelated CA"
selfca client-ca "/O=Hospital/CN=Hospital client CA"
selfca rogue-ca "/O=Hospital/CN=Hospital client CA"

sign ca server "/CN=localhost" server -days 3650
newkey expired
sign ca expired "/CN=localhost" server -startdate 20200101000000Z -enddate 20210101000000Z
newkey future
sign ca future "/CN=localhost" server -startdate 20900101000000Z -enddate 20910101000000Z
sign client-ca client "/O=Hospital/CN=radiology" client -days 3650
sign client-ca client2 "/O=Hospital/CN=cardiology" client -days 3650
sign client-ca client-expired "/O=Hospital/CN=radiology" client -startdate 20200101000000Z -enddate 20210101000000Z
sign client-ca client-eku "/O=Hospital/CN=radiology" server -days 3650
sign rogue-ca rogue "/O=Hospital/CN=radiology" client -days 3650
openssl pkey -in server.key -aes256 -passout pass:secret -out encrypted.key 2>/dev/null
chmod 600 encrypted.key
