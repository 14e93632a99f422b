"""An x402 buyer of an Agora seller, made of the official parts only: the x402
package's requests client with its EVM exact scheme, and its bazaar extension's
parsers. It POSTs --body (JSON) to --url:

1. without payment, and reads the 402: the requirements and the bazaar extension,
   parsed and checked by the package's own bazaar code (the facilitator's schema
   check needs jsonschema, pinned in requirements.txt);
2. with the paying client, allow-listing our token with spend controls as a
   third-party buyer must (the client pays only USDC on known chains by default);
3. the same PAYMENT-SIGNATURE again with the same body, as a client retrying after a
   lost answer would, then with another body;
4. once more with a new payment through the httpx client.

It prints one JSON line with what happened. The key comes from the environment
(BUYER_KEY, hex), not the command line. Run by the Rust interop test
(skills/x402/tests/it/interop.rs).
"""

import argparse
import asyncio
import base64
import json
import os

import requests
from eth_account import Account

from x402 import x402Client, x402ClientSync
from x402.extensions.bazaar import (
    validate_discovery_extension,
    validate_discovery_extension_spec,
)
from x402.extensions.bazaar.types import parse_discovery_extension
from x402.http.clients import x402HttpxClient
from x402.http.clients.requests import x402_requests
from x402.mechanisms.evm.exact import ExactEvmScheme


def decoded(header):
    return json.loads(base64.b64decode(header)) if header else None


def body_of(r):
    try:
        return r.json()
    except ValueError:
        return r.text


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--network", required=True)
    p.add_argument("--asset", required=True)
    p.add_argument("--max-amount", required=True)
    p.add_argument("--body", required=True)
    p.add_argument("--other-body", required=True)
    args = p.parse_args()
    body = json.loads(args.body)
    controls = {
        "allowed_assets": [
            {
                "network": args.network,
                "asset": args.asset,
                "max_amount_per_payment": args.max_amount,
            }
        ]
    }
    account = Account.from_key(os.environ["BUYER_KEY"])
    out = {"buyer": account.address}

    # 1. The 402, read as the package reads it.
    r = requests.post(args.url, json=body, timeout=60)
    required = decoded(r.headers.get("PAYMENT-REQUIRED"))
    bazaar = (required or {}).get("extensions", {}).get("bazaar")
    spec = validate_discovery_extension_spec(bazaar) if bazaar else None
    parsed = parse_discovery_extension(bazaar) if bazaar else None
    out["unpaid"] = {
        "status": r.status_code,
        "paymentRequired": required,
        "bazaarSpecValid": spec.valid if spec else False,
        "bazaarSpecErrors": spec.errors if spec else [],
        "bazaarKind": type(parsed).__name__ if parsed else None,
    }
    # The facilitator's check: info validates against the schema (jsonschema).
    full = validate_discovery_extension(bazaar) if bazaar else None
    out["unpaid"]["bazaarSchemaValid"] = full.valid if full else False
    out["unpaid"]["bazaarSchemaErrors"] = full.errors if full else []

    # 2. Paid, by the requests client.
    client = x402ClientSync()
    client.register(args.network, ExactEvmScheme(signer=account))
    client.set_spend_controls(controls)
    r = x402_requests(client).post(args.url, json=body, timeout=60)
    signature = r.request.headers.get("PAYMENT-SIGNATURE")
    out["paid"] = {
        "status": r.status_code,
        "body": body_of(r),
        "paymentSignature": signature,
        "paymentResponse": decoded(r.headers.get("PAYMENT-RESPONSE")),
        # What the seller attests about the result (Agora's header), if it does.
        "attestation": decoded(r.headers.get("AGORA-ATTESTATION")),
    }

    # 3. The same payment again: same body, then another.
    r = requests.post(
        args.url, json=body, headers={"PAYMENT-SIGNATURE": signature}, timeout=60
    )
    out["replayed"] = {
        "status": r.status_code,
        "body": body_of(r),
        "paymentResponse": decoded(r.headers.get("PAYMENT-RESPONSE")),
        "attestation": decoded(r.headers.get("AGORA-ATTESTATION")),
    }
    r = requests.post(
        args.url,
        json=json.loads(args.other_body),
        headers={"PAYMENT-SIGNATURE": signature},
        timeout=60,
    )
    out["otherBody"] = {"status": r.status_code, "body": body_of(r)}

    # 4. A second sale, by the httpx client.
    async def httpx_sale():
        client = x402Client()
        client.register(args.network, ExactEvmScheme(signer=account))
        client.set_spend_controls(controls)
        async with x402HttpxClient(client, timeout=60) as http:
            r = await http.post(args.url, json=body)
            return {
                "status": r.status_code,
                "body": body_of(r),
                "paymentResponse": decoded(r.headers.get("PAYMENT-RESPONSE")),
                "attestation": decoded(r.headers.get("AGORA-ATTESTATION")),
            }

    out["httpx"] = asyncio.run(httpx_sale())
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
