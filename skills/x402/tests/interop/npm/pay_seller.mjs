// An x402 buyer of an Agora seller, made of the official TypeScript parts only:
// @x402/fetch's wrapFetchWithPayment, @x402/core's client with spend controls that
// allow-list our token (the client pays only known USDC deployments by default), and
// @x402/evm's exact scheme with a viem account. It POSTs --body (JSON) to --url:
//
// 1. without payment, and reads the 402's PAYMENT-REQUIRED header;
// 2. through the paying fetch;
// 3. with the same PAYMENT-SIGNATURE again, as a client retrying after a lost answer.
//
// It prints one JSON line with what happened. The key comes from the environment
// (BUYER_KEY, hex), not the command line. Run by the Rust test
// agent-sdk/deploy/tests/it/x402.rs.
import { parseArgs } from "node:util";
import { wrapFetchWithPayment, x402Client, decodePaymentResponseHeader } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm";
import { privateKeyToAccount } from "viem/accounts";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    network: { type: "string" },
    asset: { type: "string" },
    "max-amount": { type: "string" },
    body: { type: "string" },
  },
});
const decoded = (header) => (header ? JSON.parse(Buffer.from(header, "base64").toString("utf8")) : null);
const bodyOf = async (r) => {
  const text = await r.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
};
const post = (headers = {}) => ({
  method: "POST",
  headers: { "content-type": "application/json", ...headers },
  body: args.body,
});

const account = privateKeyToAccount(`0x${process.env.BUYER_KEY}`);
const out = { buyer: account.address };

// 1. The 402.
let r = await fetch(args.url, post());
out.unpaid = { status: r.status, paymentRequired: decoded(r.headers.get("PAYMENT-REQUIRED")) };
await r.text();

// 2. Paid: the inner fetch keeps the payment the wrapper sends.
let signature = null;
const recording = async (input, init) => {
  const headers = new Headers(input instanceof Request ? input.headers : init?.headers);
  signature = headers.get("PAYMENT-SIGNATURE") ?? signature;
  return fetch(input, init);
};
const client = new x402Client()
  .register(args.network, new ExactEvmScheme(account))
  .setSpendControls({
    allowedAssets: [
      { network: args.network, asset: args.asset, maxAmountPerPayment: args["max-amount"] },
    ],
  });
r = await wrapFetchWithPayment(recording, client)(args.url, post());
const receipt = r.headers.get("PAYMENT-RESPONSE");
out.paid = {
  status: r.status,
  body: await bodyOf(r),
  paymentSignature: signature,
  paymentResponse: receipt ? decodePaymentResponseHeader(receipt) : null,
  // What the seller attests about the result (Agora's header), if it does.
  attestation: decoded(r.headers.get("AGORA-ATTESTATION")),
};

// 3. The same payment again.
r = await fetch(args.url, post({ "PAYMENT-SIGNATURE": signature }));
out.replayed = {
  status: r.status,
  body: await bodyOf(r),
  paymentResponse: decoded(r.headers.get("PAYMENT-RESPONSE")),
  attestation: decoded(r.headers.get("AGORA-ATTESTATION")),
};
console.log(JSON.stringify(out));
