"""An x402 seller made of the official parts only: a Flask app behind the x402
package's Flask payment middleware, which verifies and settles every payment through
the facilitator at --facilitator (an Agora node).

It serves GET /weather for --amount base units of --asset, paid to --pay-to on
--network, and prints `listening http://127.0.0.1:<port>` on stdout once it accepts
connections (it binds port 0). Run by the Rust interop test
(skills/x402/tests/it/interop.rs); Python dependencies pinned in requirements.txt.
"""

import argparse
import sys

from flask import Flask, jsonify
from werkzeug.serving import make_server

from x402 import x402ResourceServerSync
from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync, PaymentOption, RouteConfig
from x402.http.middleware.flask import PaymentMiddleware
from x402.mechanisms.evm.exact import ExactEvmServerScheme


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--facilitator", required=True)
    p.add_argument("--network", required=True)
    p.add_argument("--asset", required=True)
    p.add_argument("--pay-to", required=True)
    p.add_argument("--amount", required=True)
    p.add_argument("--token-name", required=True)
    args = p.parse_args()

    app = Flask(__name__)
    served = {"count": 0}

    @app.get("/weather")
    def weather():
        served["count"] += 1
        return jsonify({"forecast": "sunny", "served": served["count"]})

    facilitator = HTTPFacilitatorClientSync(FacilitatorConfig(url=args.facilitator))
    server = x402ResourceServerSync(facilitator)
    server.register(args.network, ExactEvmServerScheme())
    extra = {"name": args.token_name, "version": "2"}
    routes = {
        "GET /weather": RouteConfig(
            accepts=PaymentOption(
                scheme="exact",
                pay_to=args.pay_to,
                price={"amount": args.amount, "asset": args.asset, "extra": extra},
                network=args.network,
                max_timeout_seconds=120,
            ),
            description="a weather forecast",
            mime_type="application/json",
        )
    }
    # Asks the facilitator's GET /supported now: a facilitator that does not list the
    # network stops the process here.
    PaymentMiddleware(app, routes, server)

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    print(f"listening http://127.0.0.1:{httpd.server_port}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
