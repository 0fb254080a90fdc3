/* sign_impl.h - what the files of src/sign share and nothing else sees: the OpenSSL key
 * behind a sign_key, and a trusted key by id. */
#ifndef SOV_SIGN_IMPL_H
#define SOV_SIGN_IMPL_H

#include <openssl/evp.h>

#include "sign/sign.h"

/* The key's OpenSSL handle (owned by the key); *secret says whether it can sign. */
EVP_PKEY *sign_key_pkey_(const sign_key *key, bool *secret);
/* The trusted key with this id, or NULL. */
const sign_key *sign_trust_find_(const sign_trust *trust, const char *key_id);

#endif
