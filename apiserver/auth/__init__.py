"""Authentication for the apiserver: the cluster PKI (:mod:`.pki`) and request
authentication by client certificate or bearer token (:mod:`.authn`)."""
