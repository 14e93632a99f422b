// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Vm} from "./Vm.sol";
import {Stablecoin} from "../../src/Stablecoin.sol";

/// @notice Shared fixtures: the cheatcode handle, named keys and EIP-712 signing helpers that
///         compute digests from the typehash strings themselves, independently of the token.
abstract contract TestBase {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @dev Forge's `failed()` hook, kept for old runners; failures here revert instead.
    bool public IS_TEST = true;

    uint256 internal constant ALICE_KEY = 0xA11CE;
    uint256 internal constant BOB_KEY = 0xB0B;
    uint256 internal constant CAROL_KEY = 0xCA401;
    uint256 internal constant MALLORY_KEY = 0xBAD;

    uint256 internal constant UNIT = 1e6; // one stablecoin in base units
    uint256 internal constant START = 1_700_000_000;
    uint256 internal constant HALF_N =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    uint256 internal constant N =
        0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141;

    address internal alice = vm.addr(ALICE_KEY);
    address internal bob = vm.addr(BOB_KEY);
    address internal carol = vm.addr(CAROL_KEY);
    address internal mallory = vm.addr(MALLORY_KEY);
    address internal governor = address(0x6000);
    address internal treasury = address(0x7000);
    address internal minter = address(0x8000);

    function newToken(bool devFaucet) internal returns (Stablecoin) {
        return
            new Stablecoin("USD Coin", "USDC", minter, devFaucet, address(this), 1_000_000 * UNIT);
    }

    // ------------------------------------------------------------- EIP-712, from first principles

    function domainSeparator(Stablecoin token) internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256(
                    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
                ),
                keccak256(bytes("USD Coin")),
                keccak256(bytes("2")),
                block.chainid,
                address(token)
            )
        );
    }

    function digest(Stablecoin token, bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(token), structHash));
    }

    /// @dev The fields of an EIP-3009 transfer or receive authorization.
    struct Auth {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }

    function transferAuthDigest(Stablecoin token, bool receive_, Auth memory a)
        internal
        view
        returns (bytes32)
    {
        bytes32 typehash = receive_
            ? keccak256(
                "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
            )
            : keccak256(
                "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
            );
        return digest(
            token,
            keccak256(
                abi.encode(typehash, a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce)
            )
        );
    }

    function cancelDigest(Stablecoin token, address authorizer, bytes32 nonce)
        internal
        view
        returns (bytes32)
    {
        return digest(
            token,
            keccak256(
                abi.encode(
                    keccak256("CancelAuthorization(address authorizer,bytes32 nonce)"),
                    authorizer,
                    nonce
                )
            )
        );
    }

    function permitDigest(
        Stablecoin token,
        address owner,
        address spender,
        uint256 value,
        uint256 nonce,
        uint256 deadline
    ) internal view returns (bytes32) {
        return digest(
            token,
            keccak256(
                abi.encode(
                    keccak256(
                        "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
                    ),
                    owner,
                    spender,
                    value,
                    nonce,
                    deadline
                )
            )
        );
    }

    /// @dev Signs and returns the 65-byte r ‖ s ‖ v form.
    function signBytes(uint256 key, bytes32 hash) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, hash);
        return abi.encodePacked(r, s, v);
    }

    /// @dev The malleable twin of a signature: (v ^ 1, r, n - s), which ecrecover accepts.
    function highS(uint8 v, bytes32 r, bytes32 s) internal pure returns (uint8, bytes32, bytes32) {
        return (v == 27 ? 28 : 27, r, bytes32(N - uint256(s)));
    }

    function permitSig(
        Stablecoin token,
        uint256 key,
        address spender,
        uint256 value,
        uint256 deadline
    ) internal view returns (uint8, bytes32, bytes32) {
        address owner = vm.addr(key);
        uint256 nonce = token.nonces(owner);
        return vm.sign(key, permitDigest(token, owner, spender, value, nonce, deadline));
    }
}
