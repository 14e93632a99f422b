"""The x402 package's reference facilitator, served over HTTP: `x402FacilitatorSync`
with the exact EVM scheme registered for --network, relaying from the key in the
environment (RELAYER_KEY, hex) through --rpc. It answers the facilitator API the
package's own HTTP facilitator client speaks: POST /verify, POST /settle, GET
/supported.

It prints `listening http://127.0.0.1:<port>` on stdout once it accepts connections
(it binds port 0). Run by the Rust interop test of our x402 buyer
(skills/x402/tests/it/buyer.rs); Python dependencies pinned in requirements.txt.
"""

import argparse
import os
import sys

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from x402 import x402FacilitatorSync
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.exact import register_exact_evm_facilitator
from x402.schemas.helpers import parse_payment_payload, parse_payment_requirements


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rpc", required=True)
    p.add_argument("--network", required=True)
    args = p.parse_args()

    signer = FacilitatorWeb3Signer(
        private_key=os.environ["RELAYER_KEY"],
        rpc_url=args.rpc,
        confirmation_timeout_seconds=60,
    )
    facilitator = x402FacilitatorSync()
    register_exact_evm_facilitator(facilitator, signer, networks=args.network)

    app = Flask(__name__)

    def parsed():
        body = request.get_json(force=True)
        payload = parse_payment_payload(body["paymentPayload"])
        version = body.get("x402Version", payload.x402_version)
        return payload, parse_payment_requirements(version, body["paymentRequirements"])

    @app.post("/verify")
    def verify():
        payload, requirements = parsed()
        result = facilitator.verify(payload, requirements)
        return jsonify(result.model_dump(by_alias=True, exclude_none=True))

    @app.post("/settle")
    def settle():
        payload, requirements = parsed()
        result = facilitator.settle(payload, requirements)
        return jsonify(result.model_dump(by_alias=True, exclude_none=True))

    @app.get("/supported")
    def supported():
        return jsonify(
            facilitator.get_supported().model_dump(by_alias=True, exclude_none=True)
        )

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    print(f"listening http://127.0.0.1:{httpd.server_port}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
