-- What an API server calls (verifier/api.py; the same statements work from any language).

-- name: submit_claim
SELECT claim_id, status, reason
  FROM verifier.submit_claim(%(chain)s, %(tx_hash)s, %(token_hash)s, %(proof)s)

-- name: claim_status
SELECT status, reason FROM verifier.claim_status(%(claim_id)s)

-- name: listen_claim_done
LISTEN x402_claim_done

-- name: unlisten_claim_done
UNLISTEN x402_claim_done

-- name: consume_request
SELECT allowed, requests_remaining, reason
  FROM verifier.consume_request(%(token_hash)s, %(endpoint)s, %(method)s, %(status_code)s,
                                %(response_time_ms)s, %(ip_address)s, %(user_agent)s)
