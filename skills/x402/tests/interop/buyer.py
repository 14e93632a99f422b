"""An x402 buyer made of the official parts only: the x402 package's requests client
with its EVM exact scheme. It pays for --url once, then sends the same
PAYMENT-SIGNATURE again, and prints one JSON line with what happened.

The key comes from the environment (BUYER_KEY, hex), not the command line. By default
the client pays only USDC on known chains, so it first shows that our token is
refused, then allow-lists it with spend controls, as a third-party buyer must.
Run by the Rust interop test (skills/x402/tests/it/interop.rs).
"""

import argparse
import base64
import json
import os

import requests
from eth_account import Account

from x402 import x402ClientSync
from x402.http.clients.requests import x402_requests
from x402.mechanisms.evm.exact import ExactEvmScheme


def decoded(header):
    return json.loads(base64.b64decode(header)) if header else None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--network", required=True)
    p.add_argument("--asset", required=True)
    p.add_argument("--max-amount", required=True)
    args = p.parse_args()

    account = Account.from_key(os.environ["BUYER_KEY"])
    out = {"buyer": account.address}

    # Default spend controls: a token outside the built-in list is not paid.
    client = x402ClientSync()
    client.register(args.network, ExactEvmScheme(signer=account))
    try:
        r = x402_requests(client).get(args.url, timeout=60)
        out["default"] = {"status": r.status_code}
    except Exception as e:  # the client raises when no requirement is allowed
        out["default"] = {"error": type(e).__name__, "message": str(e)}

    client = x402ClientSync()
    client.register(args.network, ExactEvmScheme(signer=account))
    client.set_spend_controls(
        {
            "allowed_assets": [
                {
                    "network": args.network,
                    "asset": args.asset,
                    "max_amount_per_payment": args.max_amount,
                }
            ]
        }
    )
    r = x402_requests(client).get(args.url, timeout=60)
    signature = r.request.headers.get("PAYMENT-SIGNATURE")
    out["paid"] = {
        "status": r.status_code,
        "body": r.json() if r.status_code == 200 else r.text,
        "paymentSignature": signature,
        "paymentResponse": decoded(r.headers.get("PAYMENT-RESPONSE")),
    }

    # The same payment again, as a client retrying after a lost answer would.
    r = requests.get(args.url, headers={"PAYMENT-SIGNATURE": signature}, timeout=60)
    out["replayed"] = {
        "status": r.status_code,
        "paymentRequired": decoded(r.headers.get("PAYMENT-REQUIRED")),
        "paymentResponse": decoded(r.headers.get("PAYMENT-RESPONSE")),
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
