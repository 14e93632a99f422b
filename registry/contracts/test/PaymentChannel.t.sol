// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestBase} from "./utils/TestBase.sol";
import {Stablecoin} from "../src/Stablecoin.sol";
import {PaymentChannel} from "../src/PaymentChannel.sol";

contract PaymentChannelTest is TestBase {
    Stablecoin internal token;
    PaymentChannel internal channels;

    bytes32 internal constant SALT = keccak256("channel-1");
    uint256 internal constant DEPOSIT = 10 * UNIT;
    uint64 internal constant EXPIRES = uint64(START + 1 days);

    /// alice's channel to bob under SALT.
    bytes32 internal id;

    function setUp() public {
        vm.warp(START);
        token = newToken(false);
        channels = new PaymentChannel(token);
        token.transfer(alice, 100 * UNIT);
        vm.prank(alice);
        token.approve(address(channels), type(uint256).max);
        id = keccak256(abi.encode(alice, bob, SALT));
    }

    // ------------------------------------------------------------------ helpers

    /// The voucher digest from first principles (not from the contract).
    function voucherDigest(bytes32 channelId, uint256 cumulative) internal view returns (bytes32) {
        bytes32 separator = keccak256(
            abi.encode(
                keccak256(
                    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
                ),
                keccak256(bytes("Agora PaymentChannel")),
                keccak256(bytes("1")),
                block.chainid,
                address(channels)
            )
        );
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("Voucher(bytes32 channelId,uint256 cumulativeAmount)"),
                channelId,
                cumulative
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", separator, structHash));
    }

    function voucher(uint256 key, bytes32 channelId, uint256 cumulative)
        internal
        view
        returns (bytes memory)
    {
        return signBytes(key, voucherDigest(channelId, cumulative));
    }

    function openNonce(bytes32 channelId, uint64 expiresAt) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("Agora PaymentChannel open(bytes32 channelId,uint64 expiresAt)"),
                channelId,
                expiresAt
            )
        );
    }

    function topUpNonce(bytes32 channelId, uint256 deposit) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("Agora PaymentChannel topUp(bytes32 channelId,uint256 deposit)"),
                channelId,
                deposit
            )
        );
    }

    /// A ReceiveWithAuthorization from `key`'s account to the channel contract.
    function receiveAuth(uint256 key, uint256 value, bytes32 nonce)
        internal
        view
        returns (bytes memory)
    {
        return signBytes(
            key,
            transferAuthDigest(
                token, true, Auth(vm.addr(key), address(channels), value, 0, START + 1 hours, nonce)
            )
        );
    }

    function openChannel() internal {
        vm.prank(alice);
        vm.assertEq(channels.open(SALT, bob, DEPOSIT, EXPIRES), id, "channel id");
    }

    function settle(uint256 cumulative) internal {
        bytes memory sig = voucher(ALICE_KEY, id, cumulative);
        vm.prank(bob);
        channels.settle(id, cumulative, sig);
    }

    function state() internal view returns (uint256) {
        return uint256(channels.stateOf(id));
    }

    function notOpen(PaymentChannel.State current) internal view returns (bytes memory) {
        return abi.encodeWithSelector(PaymentChannel.ChannelNotOpen.selector, id, current);
    }

    /// Every move from a final state reverts with ChannelNotOpen (or ChannelExists).
    function assertFinal(PaymentChannel.State s) internal {
        bytes memory err = notOpen(s);
        bytes memory sig = voucher(ALICE_KEY, id, 1);
        vm.expectRevert(err);
        vm.prank(bob);
        channels.settle(id, 1, sig);
        vm.expectRevert(err);
        vm.prank(bob);
        channels.close(id, 1, sig);
        vm.expectRevert(err);
        vm.prank(alice);
        channels.topUp(id, 1);
        vm.expectRevert(err);
        channels.topUpWithAuthorization(id, 1, 0, START + 1 hours, sig);
        vm.expectRevert(err);
        channels.expire(id);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.ChannelExists.selector, id));
        vm.prank(alice);
        channels.open(SALT, bob, DEPOSIT, uint64(block.timestamp + 1));
    }

    // ------------------------------------------------------------------ constructor and views

    function test_constructor() public view {
        vm.assertEq(address(channels.token()), address(token), "token");
        vm.assertEq(channels.name(), "Agora PaymentChannel", "name");
        vm.assertEq(channels.version(), "1", "version");
        vm.assertEq(
            channels.VOUCHER_TYPEHASH(),
            keccak256("Voucher(bytes32 channelId,uint256 cumulativeAmount)"),
            "voucher typehash"
        );
        vm.assertEq(
            channels.EIP712_DOMAIN_TYPEHASH(),
            keccak256(
                "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
            ),
            "domain typehash"
        );
    }

    function test_ids_and_nonces() public view {
        vm.assertEq(channels.channelIdOf(alice, bob, SALT), id, "formula");
        vm.assertTrue(channels.channelIdOf(bob, alice, SALT) != id, "per direction");
        vm.assertTrue(channels.channelIdOf(alice, carol, SALT) != id, "per payee");
        vm.assertTrue(channels.channelIdOf(alice, bob, keccak256("2")) != id, "per salt");
        vm.assertEq(channels.openAuthorizationNonce(id, EXPIRES), openNonce(id, EXPIRES), "open");
        vm.assertEq(channels.topUpAuthorizationNonce(id, 7), topUpNonce(id, 7), "top-up");
        vm.assertTrue(openNonce(id, 7) != topUpNonce(id, 7), "open and top-up nonces differ");
        vm.assertEq(channels.voucherDigest(id, 5), voucherDigest(id, 5), "voucher digest");
    }

    function test_eip712Domain() public {
        (
            bytes1 fields,
            string memory name_,
            string memory version_,
            uint256 chainId,
            address verifying,
            bytes32 salt,
            uint256[] memory extensions
        ) = channels.eip712Domain();
        vm.assertEq(uint256(uint8(fields)), 0x0f, "fields");
        vm.assertEq(name_, "Agora PaymentChannel", "name");
        vm.assertEq(version_, "1", "version");
        vm.assertEq(chainId, block.chainid, "chain id");
        vm.assertEq(verifying, address(channels), "verifying contract");
        vm.assertEq(salt, bytes32(0), "salt");
        vm.assertEq(extensions.length, 0, "extensions");

        // After a fork the separator follows the chain id, and old vouchers no longer verify.
        bytes memory oldSig = voucher(ALICE_KEY, id, 1);
        openChannel();
        vm.chainId(4242);
        bytes32 fresh = keccak256(
            abi.encode(
                channels.EIP712_DOMAIN_TYPEHASH(),
                keccak256(bytes("Agora PaymentChannel")),
                keccak256(bytes("1")),
                uint256(4242),
                address(channels)
            )
        );
        vm.assertEq(channels.DOMAIN_SEPARATOR(), fresh, "separator of chain 4242");
        vm.expectRevert();
        vm.prank(bob);
        channels.settle(id, 1, oldSig);
        settle(1); // signed for chain 4242
        vm.assertEq(token.balanceOf(bob), 1, "paid on the new chain");
    }

    // ------------------------------------------------------------------ open

    function test_open() public {
        vm.expectEmit(true, true, true, true, address(channels));
        emit PaymentChannel.ChannelOpened(id, alice, bob, SALT, DEPOSIT, EXPIRES);
        openChannel();
        PaymentChannel.Channel memory c = channels.getChannel(id);
        vm.assertEq(c.payer, alice, "payer");
        vm.assertEq(c.payee, bob, "payee");
        vm.assertEq(uint256(c.expiresAt), EXPIRES, "expiry");
        vm.assertEq(uint256(c.deposit), DEPOSIT, "deposit");
        vm.assertEq(uint256(c.paid), 0, "paid");
        vm.assertEq(state(), uint256(PaymentChannel.State.Open), "open");
        vm.assertEq(token.balanceOf(address(channels)), DEPOSIT, "held");
        vm.assertEq(token.balanceOf(alice), 90 * UNIT, "paid in");
        vm.assertEq(uint256(channels.stateOf(keccak256("nothing"))), 0, "unknown is None");
    }

    function test_open_reverts() public {
        vm.startPrank(alice);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.InvalidPayee.selector, address(0)));
        channels.open(SALT, address(0), DEPOSIT, EXPIRES);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.InvalidPayee.selector, alice));
        channels.open(SALT, alice, DEPOSIT, EXPIRES);
        vm.expectRevert(PaymentChannel.ZeroAmount.selector);
        channels.open(SALT, bob, 0, EXPIRES);
        uint256 huge = uint256(type(uint128).max) + 1;
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.AmountTooLarge.selector, huge));
        channels.open(SALT, bob, huge, EXPIRES);
        vm.expectRevert(
            abi.encodeWithSelector(PaymentChannel.ExpiryInPast.selector, uint64(START), START)
        );
        channels.open(SALT, bob, DEPOSIT, uint64(START));
        vm.expectRevert(
            abi.encodeWithSelector(
                Stablecoin.InsufficientBalance.selector, alice, 100 * UNIT, 101 * UNIT
            )
        );
        channels.open(SALT, bob, 101 * UNIT, EXPIRES);
        channels.open(SALT, bob, DEPOSIT, EXPIRES);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.ChannelExists.selector, id));
        channels.open(SALT, bob, DEPOSIT, EXPIRES);
        vm.stopPrank();
    }

    function test_open_revertsWithoutAllowance() public {
        token.transfer(carol, 10 * UNIT);
        vm.expectRevert(
            abi.encodeWithSelector(
                Stablecoin.InsufficientAllowance.selector, carol, address(channels), 0, DEPOSIT
            )
        );
        vm.prank(carol);
        channels.open(SALT, bob, DEPOSIT, EXPIRES);
    }

    /// carol never approved anything and sends no transaction: bob submits her authorization.
    function test_openWithAuthorization() public {
        token.transfer(carol, 20 * UNIT);
        bytes32 cid = keccak256(abi.encode(carol, bob, SALT));
        bytes memory sig = receiveAuth(CAROL_KEY, DEPOSIT, openNonce(cid, EXPIRES));
        vm.expectEmit(true, true, true, true, address(channels));
        emit PaymentChannel.ChannelOpened(cid, carol, bob, SALT, DEPOSIT, EXPIRES);
        vm.prank(bob);
        bytes32 got = channels.openWithAuthorization(
            carol, SALT, bob, DEPOSIT, EXPIRES, 0, START + 1 hours, sig
        );
        vm.assertEq(got, cid, "channel id");
        vm.assertEq(token.balanceOf(address(channels)), DEPOSIT, "held");
        vm.assertEq(token.balanceOf(carol), 10 * UNIT, "paid in");
        vm.assertTrue(token.authorizationState(carol, openNonce(cid, EXPIRES)), "nonce used");
        vm.assertEq(channels.getChannel(cid).payer, carol, "payer");

        // A copy submitted again (front-run or retry) opens nothing more.
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.ChannelExists.selector, cid));
        channels.openWithAuthorization(carol, SALT, bob, DEPOSIT, EXPIRES, 0, START + 1 hours, sig);
    }

    /// A relayer cannot reuse carol's signature for other terms: the nonce the contract
    /// derives differs, so the token recovers someone else.
    function test_openWithAuthorization_bindsTheTerms() public {
        token.transfer(carol, 20 * UNIT);
        bytes32 cid = keccak256(abi.encode(carol, bob, SALT));
        bytes memory sig = receiveAuth(CAROL_KEY, DEPOSIT, openNonce(cid, EXPIRES));
        vm.startPrank(mallory);
        // Another payee (mallory herself).
        bytes32 other = keccak256(abi.encode(carol, mallory, SALT));
        vm.expectRevert(tokenSignerError(sig, carol, DEPOSIT, openNonce(other, EXPIRES)));
        channels.openWithAuthorization(
            carol, SALT, mallory, DEPOSIT, EXPIRES, 0, START + 1 hours, sig
        );
        // Another salt, expiry or amount.
        other = keccak256(abi.encode(carol, bob, keccak256("x")));
        vm.expectRevert(tokenSignerError(sig, carol, DEPOSIT, openNonce(other, EXPIRES)));
        channels.openWithAuthorization(
            carol, keccak256("x"), bob, DEPOSIT, EXPIRES, 0, START + 1 hours, sig
        );
        vm.expectRevert(tokenSignerError(sig, carol, DEPOSIT, openNonce(cid, EXPIRES + 1)));
        channels.openWithAuthorization(
            carol, SALT, bob, DEPOSIT, EXPIRES + 1, 0, START + 1 hours, sig
        );
        vm.expectRevert(tokenSignerError(sig, carol, DEPOSIT + 1, openNonce(cid, EXPIRES)));
        channels.openWithAuthorization(
            carol, SALT, bob, DEPOSIT + 1, EXPIRES, 0, START + 1 hours, sig
        );
        // The authorization cannot be executed outside the channel contract either.
        vm.expectRevert(
            abi.encodeWithSelector(Stablecoin.CallerMustBePayee.selector, mallory, channels)
        );
        token.receiveWithAuthorization(
            carol, address(channels), DEPOSIT, 0, START + 1 hours, openNonce(cid, EXPIRES), sig
        );
        vm.stopPrank();
        vm.assertEq(token.balanceOf(carol), 20 * UNIT, "nothing moved");
    }

    function test_openWithAuthorization_rethrowsTokenErrors() public {
        token.transfer(carol, 20 * UNIT);
        bytes32 cid = keccak256(abi.encode(carol, bob, SALT));
        bytes memory sig = receiveAuth(CAROL_KEY, DEPOSIT, openNonce(cid, EXPIRES));
        vm.warp(START + 1 hours);
        vm.expectRevert(
            abi.encodeWithSelector(
                Stablecoin.AuthorizationExpired.selector, START + 1 hours, START + 1 hours
            )
        );
        channels.openWithAuthorization(carol, SALT, bob, DEPOSIT, EXPIRES, 0, START + 1 hours, sig);
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSignatureLength.selector, 64));
        channels.openWithAuthorization(
            carol, SALT, bob, DEPOSIT, EXPIRES, 0, START + 2 hours, new bytes(64)
        );
    }

    /// The InvalidSigner error the token raises when `sig` is checked against the
    /// ReceiveWithAuthorization the contract derives (`value`, `nonce`) for `payer`.
    function tokenSignerError(bytes memory sig, address payer, uint256 value, bytes32 nonce)
        internal
        view
        returns (bytes memory)
    {
        bytes32 digest = transferAuthDigest(
            token, true, Auth(payer, address(channels), value, 0, START + 1 hours, nonce)
        );
        return
            abi.encodeWithSelector(Stablecoin.InvalidSigner.selector, recover(digest, sig), payer);
    }

    /// The InvalidSigner error the channel raises for a voucher signature `sig` checked as
    /// alice's voucher for `cumulative` in channel `id`.
    function voucherSignerError(bytes memory sig, uint256 cumulative)
        internal
        view
        returns (bytes memory)
    {
        return abi.encodeWithSelector(
            PaymentChannel.InvalidSigner.selector,
            recover(voucherDigest(id, cumulative), sig),
            alice
        );
    }

    /// ecrecover of a 65-byte signature; asserts it recovers to someone. Call before
    /// expectRevert: the precompile call would consume it.
    function recover(bytes32 hash, bytes memory sig) internal pure returns (address a) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
        a = ecrecover(hash, v, r, s);
        vm.assertTrue(a != address(0), "recovers someone");
    }

    // ------------------------------------------------------------------ top-up

    function test_topUp() public {
        openChannel();
        vm.expectEmit(true, false, false, true, address(channels));
        emit PaymentChannel.ChannelToppedUp(id, 5 * UNIT, DEPOSIT + 5 * UNIT);
        vm.prank(alice);
        channels.topUp(id, 5 * UNIT);
        vm.assertEq(uint256(channels.getChannel(id).deposit), DEPOSIT + 5 * UNIT, "deposit");
        vm.assertEq(token.balanceOf(address(channels)), DEPOSIT + 5 * UNIT, "held");
        vm.warp(EXPIRES); // the expiry itself is still in time
        vm.prank(alice);
        channels.topUp(id, 1);
    }

    function test_topUp_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.UnknownChannel.selector, id));
        vm.prank(alice);
        channels.topUp(id, 1);
        openChannel();
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.NotPayer.selector, bob));
        vm.prank(bob);
        channels.topUp(id, 1);
        vm.startPrank(alice);
        vm.expectRevert(PaymentChannel.ZeroAmount.selector);
        channels.topUp(id, 0);
        uint256 over = uint256(type(uint128).max) - DEPOSIT + 1;
        vm.expectRevert(
            abi.encodeWithSelector(
                PaymentChannel.AmountTooLarge.selector, uint256(type(uint128).max) + 1
            )
        );
        channels.topUp(id, over);
        vm.warp(EXPIRES + 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                PaymentChannel.ChannelPastExpiry.selector, id, EXPIRES, EXPIRES + 1
            )
        );
        channels.topUp(id, 1);
        vm.stopPrank();
    }

    function test_topUpWithAuthorization() public {
        openChannel();
        uint256 total = DEPOSIT + 3 * UNIT;
        bytes memory sig = receiveAuth(ALICE_KEY, 3 * UNIT, topUpNonce(id, total));
        vm.expectEmit(true, false, false, true, address(channels));
        emit PaymentChannel.ChannelToppedUp(id, 3 * UNIT, total);
        vm.prank(bob);
        channels.topUpWithAuthorization(id, 3 * UNIT, 0, START + 1 hours, sig);
        vm.assertEq(uint256(channels.getChannel(id).deposit), total, "deposit");
        vm.assertEq(token.balanceOf(address(channels)), total, "held");

        // The same authorization again: it was for a deposit of `total`, which is passed.
        vm.expectRevert(tokenSignerError(sig, alice, 3 * UNIT, topUpNonce(id, total + 3 * UNIT)));
        channels.topUpWithAuthorization(id, 3 * UNIT, 0, START + 1 hours, sig);
    }

    /// A top-up authorization is valid only on top of the deposit it was signed for.
    function test_topUpWithAuthorization_isBoundToTheDeposit() public {
        openChannel();
        bytes memory sig = receiveAuth(ALICE_KEY, UNIT, topUpNonce(id, DEPOSIT + UNIT));
        vm.prank(alice);
        channels.topUp(id, 1); // the deposit moved on
        vm.expectRevert(tokenSignerError(sig, alice, UNIT, topUpNonce(id, DEPOSIT + 1 + UNIT)));
        channels.topUpWithAuthorization(id, UNIT, 0, START + 1 hours, sig);
        // An open authorization is not a top-up authorization.
        bytes memory openSig = receiveAuth(ALICE_KEY, UNIT, openNonce(id, EXPIRES));
        vm.expectRevert(tokenSignerError(openSig, alice, UNIT, topUpNonce(id, DEPOSIT + 1 + UNIT)));
        channels.topUpWithAuthorization(id, UNIT, 0, START + 1 hours, openSig);
    }

    function test_topUpWithAuthorization_reverts() public {
        bytes memory sig = receiveAuth(ALICE_KEY, UNIT, topUpNonce(id, DEPOSIT + UNIT));
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.UnknownChannel.selector, id));
        channels.topUpWithAuthorization(id, UNIT, 0, START + 1 hours, sig);
        openChannel();
        vm.expectRevert(PaymentChannel.ZeroAmount.selector);
        channels.topUpWithAuthorization(id, 0, 0, START + 1 hours, sig);
        vm.warp(EXPIRES + 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                PaymentChannel.ChannelPastExpiry.selector, id, EXPIRES, EXPIRES + 1
            )
        );
        channels.topUpWithAuthorization(id, UNIT, 0, START + 1 hours, sig);
    }

    // ------------------------------------------------------------------ settle

    function test_settle() public {
        openChannel();
        vm.expectEmit(true, false, false, true, address(channels));
        emit PaymentChannel.ChannelSettled(id, 2 * UNIT, 2 * UNIT);
        settle(2 * UNIT);
        vm.assertEq(token.balanceOf(bob), 2 * UNIT, "first increment");
        vm.assertEq(uint256(channels.getChannel(id).paid), 2 * UNIT, "paid");

        // A later voucher pays only the increment; vouchers in between were never needed.
        vm.expectEmit(true, false, false, true, address(channels));
        emit PaymentChannel.ChannelSettled(id, 7 * UNIT, 5 * UNIT);
        settle(7 * UNIT);
        vm.assertEq(token.balanceOf(bob), 7 * UNIT, "cumulative");

        // The whole deposit, at the expiry itself.
        vm.warp(EXPIRES);
        settle(DEPOSIT);
        vm.assertEq(token.balanceOf(bob), DEPOSIT, "all of it");
        vm.assertEq(token.balanceOf(address(channels)), 0, "empty");
        vm.assertEq(state(), uint256(PaymentChannel.State.Open), "still open");
    }

    /// Only the payee settles, only before expiry, only above the last settlement and only
    /// up to the deposit.
    function test_settle_reverts() public {
        bytes memory sig = voucher(ALICE_KEY, id, UNIT);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.UnknownChannel.selector, id));
        vm.prank(bob);
        channels.settle(id, UNIT, sig);
        openChannel();
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.NotPayee.selector, alice));
        vm.prank(alice);
        channels.settle(id, UNIT, sig);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.StaleVoucher.selector, id, 0, 0));
        vm.prank(bob);
        channels.settle(id, 0, voucher(ALICE_KEY, id, 0));
        bytes memory over = voucher(ALICE_KEY, id, DEPOSIT + 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                PaymentChannel.VoucherExceedsDeposit.selector, id, DEPOSIT + 1, DEPOSIT
            )
        );
        vm.prank(bob);
        channels.settle(id, DEPOSIT + 1, over);
        settle(3 * UNIT);
        // A stale voucher (lower) and a replay (equal) both revert.
        bytes memory low = voucher(ALICE_KEY, id, 2 * UNIT);
        vm.expectRevert(
            abi.encodeWithSelector(PaymentChannel.StaleVoucher.selector, id, 2 * UNIT, 3 * UNIT)
        );
        vm.prank(bob);
        channels.settle(id, 2 * UNIT, low);
        bytes memory same = voucher(ALICE_KEY, id, 3 * UNIT);
        vm.expectRevert(
            abi.encodeWithSelector(PaymentChannel.StaleVoucher.selector, id, 3 * UNIT, 3 * UNIT)
        );
        vm.prank(bob);
        channels.settle(id, 3 * UNIT, same);
        // After the expiry the payee is too late.
        vm.warp(EXPIRES + 1);
        bytes memory late = voucher(ALICE_KEY, id, 4 * UNIT);
        vm.expectRevert(
            abi.encodeWithSelector(
                PaymentChannel.ChannelPastExpiry.selector, id, EXPIRES, EXPIRES + 1
            )
        );
        vm.prank(bob);
        channels.settle(id, 4 * UNIT, late);
    }

    /// A voucher above the deposit becomes good once the payer tops up.
    function test_settle_voucherAboveDepositAfterTopUp() public {
        openChannel();
        bytes memory sig = voucher(ALICE_KEY, id, 12 * UNIT);
        vm.expectRevert(
            abi.encodeWithSelector(
                PaymentChannel.VoucherExceedsDeposit.selector, id, 12 * UNIT, DEPOSIT
            )
        );
        vm.prank(bob);
        channels.settle(id, 12 * UNIT, sig);
        vm.prank(alice);
        channels.topUp(id, 2 * UNIT);
        vm.prank(bob);
        channels.settle(id, 12 * UNIT, sig);
        vm.assertEq(token.balanceOf(bob), 12 * UNIT, "paid");
    }

    function test_settle_signatureChecks() public {
        openChannel();
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ALICE_KEY, voucherDigest(id, UNIT));
        vm.startPrank(bob);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.InvalidSignatureLength.selector, 64));
        channels.settle(id, UNIT, abi.encodePacked(r, s));
        // The malleable twin (high s) of a valid signature.
        (uint8 v2, bytes32 r2, bytes32 s2) = highS(v, r, s);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.InvalidSignatureS.selector, s2));
        channels.settle(id, UNIT, abi.encodePacked(r2, s2, v2));
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.InvalidSignatureV.selector, 1));
        channels.settle(id, UNIT, abi.encodePacked(r, s, uint8(1)));
        // r = 0 is not a curve point: ecrecover returns the zero address.
        vm.expectRevert(PaymentChannel.InvalidSignature.selector);
        channels.settle(id, UNIT, abi.encodePacked(bytes32(0), bytes32(uint256(1)), uint8(27)));
        // Signed by someone else (bob himself), or by alice for another channel or amount.
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.InvalidSigner.selector, bob, alice));
        channels.settle(id, UNIT, voucher(BOB_KEY, id, UNIT));
        bytes memory other = voucher(ALICE_KEY, keccak256("other"), UNIT);
        vm.expectRevert(voucherSignerError(other, UNIT));
        channels.settle(id, UNIT, other);
        bytes memory wrongAmount = voucher(ALICE_KEY, id, UNIT - 1);
        vm.expectRevert(voucherSignerError(wrongAmount, UNIT));
        channels.settle(id, UNIT, wrongAmount);
        // The low-s original goes through.
        channels.settle(id, UNIT, abi.encodePacked(r, s, v));
        vm.stopPrank();
        vm.assertEq(token.balanceOf(bob), UNIT, "paid");
    }

    // ------------------------------------------------------------------ close

    function test_close_settlesAndRefunds() public {
        openChannel();
        settle(2 * UNIT);
        bytes memory sig = voucher(ALICE_KEY, id, 6 * UNIT);
        vm.expectEmit(true, false, false, true, address(channels));
        emit PaymentChannel.ChannelSettled(id, 6 * UNIT, 4 * UNIT);
        vm.expectEmit(true, false, false, true, address(channels));
        emit PaymentChannel.ChannelClosed(id, 6 * UNIT, 4 * UNIT);
        vm.prank(bob);
        channels.close(id, 6 * UNIT, sig);
        vm.assertEq(token.balanceOf(bob), 6 * UNIT, "payee");
        vm.assertEq(token.balanceOf(alice), 94 * UNIT, "payer refunded");
        vm.assertEq(token.balanceOf(address(channels)), 0, "empty");
        vm.assertEq(state(), uint256(PaymentChannel.State.Closed), "closed");
        assertFinal(PaymentChannel.State.Closed);
    }

    /// Closing at the last settled amount needs no signature and pays nothing more.
    function test_close_atLastSettlement() public {
        openChannel();
        settle(3 * UNIT);
        vm.expectEmit(true, false, false, true, address(channels));
        emit PaymentChannel.ChannelClosed(id, 3 * UNIT, 7 * UNIT);
        vm.prank(bob);
        channels.close(id, 3 * UNIT, "");
        vm.assertEq(token.balanceOf(bob), 3 * UNIT, "payee");
        vm.assertEq(token.balanceOf(alice), 97 * UNIT, "payer refunded");
    }

    /// The payee closes the whole deposit: nothing to refund.
    function test_close_wholeDeposit() public {
        openChannel();
        bytes memory sig = voucher(ALICE_KEY, id, DEPOSIT);
        vm.warp(EXPIRES);
        vm.prank(bob);
        channels.close(id, DEPOSIT, sig);
        vm.assertEq(token.balanceOf(bob), DEPOSIT, "payee");
        vm.assertEq(token.balanceOf(alice), 90 * UNIT, "no refund");
        // And a payee who closes after settling everything: no transfer at all.
        vm.prank(alice);
        channels.open(keccak256("2"), bob, UNIT, EXPIRES + 1);
        bytes32 id2 = keccak256(abi.encode(alice, bob, keccak256("2")));
        bytes memory sig2 = voucher(ALICE_KEY, id2, UNIT);
        vm.startPrank(bob);
        channels.settle(id2, UNIT, sig2);
        channels.close(id2, UNIT, "");
        vm.stopPrank();
        vm.assertEq(token.balanceOf(bob), DEPOSIT + UNIT, "payee");
    }

    function test_close_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.UnknownChannel.selector, id));
        vm.prank(bob);
        channels.close(id, 0, "");
        openChannel();
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.NotPayee.selector, alice));
        vm.prank(alice);
        channels.close(id, 0, "");
        settle(2 * UNIT);
        bytes memory low = voucher(ALICE_KEY, id, UNIT);
        vm.expectRevert(
            abi.encodeWithSelector(PaymentChannel.StaleVoucher.selector, id, UNIT, 2 * UNIT)
        );
        vm.prank(bob);
        channels.close(id, UNIT, low);
        vm.expectRevert(
            abi.encodeWithSelector(
                PaymentChannel.VoucherExceedsDeposit.selector, id, DEPOSIT + 1, DEPOSIT
            )
        );
        vm.prank(bob);
        channels.close(id, DEPOSIT + 1, low);
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.InvalidSignatureLength.selector, 0));
        vm.prank(bob);
        channels.close(id, 3 * UNIT, "");
        vm.warp(EXPIRES + 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                PaymentChannel.ChannelPastExpiry.selector, id, EXPIRES, EXPIRES + 1
            )
        );
        vm.prank(bob);
        channels.close(id, 2 * UNIT, "");
    }

    // ------------------------------------------------------------------ expire

    function test_expire_refundsTheRest() public {
        openChannel();
        settle(4 * UNIT);
        vm.expectRevert(
            abi.encodeWithSelector(PaymentChannel.ChannelNotExpired.selector, id, EXPIRES, START)
        );
        channels.expire(id);
        vm.warp(EXPIRES);
        vm.expectRevert(
            abi.encodeWithSelector(PaymentChannel.ChannelNotExpired.selector, id, EXPIRES, EXPIRES)
        );
        channels.expire(id);
        vm.warp(EXPIRES + 1);
        vm.expectEmit(true, false, false, true, address(channels));
        emit PaymentChannel.ChannelExpired(id, 4 * UNIT, 6 * UNIT);
        vm.prank(mallory); // anyone; the money goes to the payer
        channels.expire(id);
        vm.assertEq(token.balanceOf(alice), 96 * UNIT, "payer refunded");
        vm.assertEq(token.balanceOf(bob), 4 * UNIT, "payee kept what it settled");
        vm.assertEq(token.balanceOf(mallory), 0, "caller got nothing");
        vm.assertEq(state(), uint256(PaymentChannel.State.Expired), "expired");
        assertFinal(PaymentChannel.State.Expired);
    }

    function test_expire_fullySettled() public {
        openChannel();
        settle(DEPOSIT);
        vm.warp(EXPIRES + 1);
        vm.expectEmit(true, false, false, true, address(channels));
        emit PaymentChannel.ChannelExpired(id, DEPOSIT, 0);
        channels.expire(id);
        vm.assertEq(token.balanceOf(alice), 90 * UNIT, "nothing to refund");
    }

    function test_expire_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(PaymentChannel.UnknownChannel.selector, id));
        channels.expire(id);
    }

    // ------------------------------------------------------------------ fuzz

    /// Whatever the vouchers and whoever ends the channel, the payee gets exactly the highest
    /// settled voucher, the payer the rest, and the contract keeps nothing.
    function testFuzz_conservation(uint64[4] memory steps, uint64 topUp, bool closeIt) public {
        openChannel();
        uint256 deposit = DEPOSIT;
        topUp = uint64(bound(topUp, 0, 50 * UNIT));
        if (topUp != 0) {
            vm.prank(alice);
            channels.topUp(id, topUp);
            deposit += topUp;
        }
        uint256 cumulative;
        for (uint256 i = 0; i < steps.length; i++) {
            uint256 next = cumulative + bound(steps[i], 1, deposit);
            if (next > deposit) break;
            settle(next);
            cumulative = next;
        }
        if (closeIt) {
            vm.prank(bob);
            channels.close(id, cumulative, "");
        } else {
            vm.warp(EXPIRES + 1);
            channels.expire(id);
        }
        vm.assertEq(token.balanceOf(bob), cumulative, "payee got the last voucher");
        vm.assertEq(token.balanceOf(alice), 100 * UNIT - cumulative, "payer got the rest");
        vm.assertEq(token.balanceOf(address(channels)), 0, "nothing stuck");
    }

    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + x % (hi - lo + 1);
    }
}
