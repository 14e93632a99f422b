// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestBase} from "./utils/TestBase.sol";
import {Stablecoin} from "../src/Stablecoin.sol";

contract StablecoinTest is TestBase {
    Stablecoin internal token;

    bytes32 internal constant NONCE = keccak256("nonce-1");

    function setUp() public {
        vm.warp(START);
        token = newToken(false);
        token.transfer(alice, 1_000 * UNIT);
    }

    // ------------------------------------------------------------------ metadata

    function test_metadata() public view {
        vm.assertEq(token.name(), "USD Coin", "name");
        vm.assertEq(token.symbol(), "USDC", "symbol");
        vm.assertEq(uint256(token.decimals()), 6, "decimals");
        vm.assertEq(token.version(), "2", "version");
        vm.assertEq(token.totalSupply(), 1_000_000 * UNIT, "supply");
        vm.assertEq(token.minter(), minter, "minter");
        vm.assertFalse(token.devFaucet(), "faucet");
    }

    function test_typehashesMatchUsdc() public view {
        vm.assertEq(
            token.TRANSFER_WITH_AUTHORIZATION_TYPEHASH(),
            0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267,
            "TransferWithAuthorization"
        );
        vm.assertEq(
            token.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(),
            0xd099cc98ef71107a616c4f0f941f04c322d8e254fe26b3c6668db87aae413de8,
            "ReceiveWithAuthorization"
        );
        vm.assertEq(
            token.CANCEL_AUTHORIZATION_TYPEHASH(),
            0x158b0a9edf7a828aad02f63cd515c68ef2f50ba807396f6d12842833a1597429,
            "CancelAuthorization"
        );
        vm.assertEq(
            token.PERMIT_TYPEHASH(),
            0x6e71edae12b1b97f4d1f60370fef10105fa2faae0126114a169c64845d6126c9,
            "Permit"
        );
    }

    function test_domainSeparator() public {
        vm.assertEq(token.DOMAIN_SEPARATOR(), domainSeparator(token), "separator");
        (bytes1 fields, string memory name, string memory version, uint256 chainId, address vc,,) =
            token.eip712Domain();
        vm.assertEq(uint256(uint8(fields)), 0x0f, "fields");
        vm.assertEq(name, "USD Coin", "domain name");
        vm.assertEq(version, "2", "domain version");
        vm.assertEq(chainId, block.chainid, "domain chain");
        vm.assertEq(vc, address(token), "domain contract");

        // A fork to another chain id: the separator follows.
        bytes32 before = token.DOMAIN_SEPARATOR();
        vm.chainId(4242);
        bytes32 forked = token.DOMAIN_SEPARATOR();
        vm.assertTrue(forked != before, "separator changed");
        vm.assertEq(forked, domainSeparator(token), "separator on new chain");
    }

    /// Signatures produced off-chain by ethers v6 (`Wallet.signTypedData`) for a fixed key, a
    /// token deployed by that key at nonce 0 on chain 31337: the contract must accept them
    /// byte for byte. Domain {name "USD Coin", version "2", chainId 31337, verifyingContract
    /// 0x247438DB81Ddcd424D50f14BC01A3bBbbaE4cB87}.
    function test_offChainVectorsFromEthers() public {
        uint256 key = 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcac783d7bf4f2ff80;
        address owner = vm.addr(key);
        vm.assertEq(owner, 0x9F5594C0511D0c3ac09C51d2a6FDc15c86C5eeEd, "owner");
        vm.chainId(31337);
        vm.prank(owner);
        Stablecoin t = new Stablecoin("USD Coin", "USDC", owner, true, owner, 10 * UNIT);
        vm.assertEq(address(t), 0x247438DB81Ddcd424D50f14BC01A3bBbbaE4cB87, "token address");
        vm.assertEq(
            t.DOMAIN_SEPARATOR(),
            0xd860eaad50d8b63291c1e06589fe3392f869ceff1e96f752cba751cc60556512,
            "separator"
        );
        address payee = 0x70997970C51812dc3A010C7d01b50e0d17dc79C8;
        bytes32 nonce = 0xd1ce3732476c560b7cee9898d7121cfc7084edb5a56473f55bf8155509646812; // id("agora/test/eip3009/1")
        vm.assertEq(
            transferAuthDigest(t, false, Auth(owner, payee, 1_500_000, 0, 4102444800, nonce)),
            0x15d8be6483815057b6146a3170e3f4b525138aba719c6d5428a3cf61e1b291e8,
            "eip3009 digest"
        );
        t.transferWithAuthorization(
            owner,
            payee,
            1_500_000,
            0,
            4102444800,
            nonce,
            hex"7eb9a516bfc4f58f0edc15a634c90bd5f1beae2655f24c3cfb94ca805edd08cf789bc2af19762ad88aba7724a794708da6cb73d1c5573ad0f02cac194fdf0cc61c"
        );
        vm.assertEq(t.balanceOf(payee), 1_500_000, "paid");
        vm.assertTrue(t.authorizationState(owner, nonce), "nonce used");

        vm.assertEq(
            permitDigest(t, owner, payee, 2_500_000, 0, 4102444800),
            0x966e086143b87212e53bfa6dc5459155c59db08cae6c11a47592dceee9b10043,
            "permit digest"
        );
        t.permit(
            owner,
            payee,
            2_500_000,
            4102444800,
            27,
            0xfee4528a55bdd33112444278eb0ab61075f342f5681ec90af03ab54fab990176,
            0x163cae0be044173601d1493ae56c30f3a64a7c31fb0598bcf3e6f46b9d1542f7
        );
        vm.assertEq(t.allowance(owner, payee), 2_500_000, "permitted");
    }

    // ------------------------------------------------------------------ ERC-20

    function test_transfer() public {
        vm.expectEmit(true, true, false, true, address(token));
        emit Stablecoin.Transfer(alice, bob, 5 * UNIT);
        vm.prank(alice);
        vm.assertTrue(token.transfer(bob, 5 * UNIT), "returns true");
        vm.assertEq(token.balanceOf(alice), 995 * UNIT, "alice");
        vm.assertEq(token.balanceOf(bob), 5 * UNIT, "bob");
    }

    function test_transfer_revertsOnInsufficientBalance() public {
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InsufficientBalance.selector, bob, 0, 1));
        vm.prank(bob);
        token.transfer(alice, 1);
    }

    function test_transfer_revertsToZeroAddress() public {
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidReceiver.selector, address(0)));
        vm.prank(alice);
        token.transfer(address(0), 1);
    }

    function test_approveAndTransferFrom() public {
        vm.prank(alice);
        vm.assertTrue(token.approve(bob, 10 * UNIT), "approve");
        vm.expectEmit(true, true, false, true, address(token));
        emit Stablecoin.Approval(alice, bob, 6 * UNIT);
        vm.prank(bob);
        vm.assertTrue(token.transferFrom(alice, carol, 4 * UNIT), "transferFrom");
        vm.assertEq(token.allowance(alice, bob), 6 * UNIT, "allowance left");
        vm.assertEq(token.balanceOf(carol), 4 * UNIT, "carol");
    }

    function test_infiniteAllowanceIsNotSpent() public {
        vm.prank(alice);
        token.approve(bob, type(uint256).max);
        vm.prank(bob);
        token.transferFrom(alice, carol, 4 * UNIT);
        vm.assertEq(token.allowance(alice, bob), type(uint256).max, "still infinite");
    }

    function test_transferFrom_revertsOnInsufficientAllowance() public {
        vm.prank(alice);
        token.approve(bob, 1);
        vm.expectRevert(
            abi.encodeWithSelector(Stablecoin.InsufficientAllowance.selector, alice, bob, 1, 2)
        );
        vm.prank(bob);
        token.transferFrom(alice, carol, 2);
    }

    function test_approve_revertsForZeroSpender() public {
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSpender.selector, address(0)));
        vm.prank(alice);
        token.approve(address(0), 1);
    }

    function test_burn() public {
        vm.expectEmit(true, true, false, true, address(token));
        emit Stablecoin.Transfer(alice, address(0), 10 * UNIT);
        vm.prank(alice);
        token.burn(10 * UNIT);
        vm.assertEq(token.totalSupply(), 999_990 * UNIT, "supply");
        vm.assertEq(token.balanceOf(alice), 990 * UNIT, "balance");
    }

    function test_burn_revertsOnInsufficientBalance() public {
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InsufficientBalance.selector, bob, 0, 1));
        vm.prank(bob);
        token.burn(1);
    }

    // ------------------------------------------------------------------ minting

    function test_mint_onDevChain() public {
        Stablecoin dev = newToken(true);
        vm.prank(minter);
        dev.mint(bob, 7 * UNIT);
        vm.assertEq(dev.balanceOf(bob), 7 * UNIT, "minted");
        vm.assertEq(dev.totalSupply(), 1_000_007 * UNIT, "supply");
    }

    function test_mint_revertsWhenFaucetDisabled() public {
        vm.expectRevert(Stablecoin.MintingDisabled.selector);
        vm.prank(minter);
        token.mint(bob, 1);
    }

    function test_mint_revertsForNonMinter() public {
        Stablecoin dev = newToken(true);
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.NotMinter.selector, mallory));
        vm.prank(mallory);
        dev.mint(mallory, 1);
    }

    function test_mint_revertsToZeroAddress() public {
        Stablecoin dev = newToken(true);
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidReceiver.selector, address(0)));
        vm.prank(minter);
        dev.mint(address(0), 1);
    }

    function test_constructor_revertsForZeroHolder() public {
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidReceiver.selector, address(0)));
        new Stablecoin("USD Coin", "USDC", minter, false, address(0), 1);
    }

    function test_constructor_zeroSupply() public {
        Stablecoin t = new Stablecoin("USDC", "USDC", minter, false, address(0), 0);
        vm.assertEq(t.totalSupply(), 0, "no supply");
    }

    // ------------------------------------------------------------------ permit

    function test_permit() public {
        uint256 deadline = START + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = permitSig(token, ALICE_KEY, bob, 50 * UNIT, deadline);
        vm.expectEmit(true, true, false, true, address(token));
        emit Stablecoin.Approval(alice, bob, 50 * UNIT);
        vm.prank(mallory); // anyone may submit
        token.permit(alice, bob, 50 * UNIT, deadline, v, r, s);
        vm.assertEq(token.allowance(alice, bob), 50 * UNIT, "allowance");
        vm.assertEq(token.nonces(alice), 1, "nonce");

        // The same signature cannot be used twice: the nonce moved on, so the token hashes a
        // different message and recovers some unrelated address from the signature.
        address other = recover(permitDigest(token, alice, bob, 50 * UNIT, 1, deadline), v, r, s);
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSigner.selector, other, alice));
        token.permit(alice, bob, 50 * UNIT, deadline, v, r, s);
    }

    function test_permit_bytesSignature() public {
        uint256 deadline = START; // inclusive
        bytes memory sig = signBytes(ALICE_KEY, permitDigest(token, alice, bob, 3, 0, deadline));
        token.permit(alice, bob, 3, deadline, sig);
        vm.assertEq(token.allowance(alice, bob), 3, "allowance");
    }

    function test_permit_revertsWhenExpired() public {
        uint256 deadline = START - 1;
        (uint8 v, bytes32 r, bytes32 s) = permitSig(token, ALICE_KEY, bob, 1, deadline);
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.PermitExpired.selector, deadline, START));
        token.permit(alice, bob, 1, deadline, v, r, s);
    }

    function test_permit_revertsForWrongSigner() public {
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(MALLORY_KEY, permitDigest(token, alice, bob, 1, 0, START));
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSigner.selector, mallory, alice));
        token.permit(alice, bob, 1, START, v, r, s);
    }

    function test_permit_revertsForZeroSpender() public {
        (uint8 v, bytes32 r, bytes32 s) = permitSig(token, ALICE_KEY, address(0), 1, START);
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSpender.selector, address(0)));
        token.permit(alice, address(0), 1, START, v, r, s);
    }

    function test_permit_revertsForHighS() public {
        (uint8 v, bytes32 r, bytes32 s) = permitSig(token, ALICE_KEY, bob, 1, START);
        (uint8 v2, bytes32 r2, bytes32 s2) = highS(v, r, s);
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSignatureS.selector, s2));
        token.permit(alice, bob, 1, START, v2, r2, s2);
    }

    function test_permit_revertsForBadLength() public {
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSignatureLength.selector, 64));
        token.permit(alice, bob, 1, START, new bytes(64));
    }

    // ------------------------------------------------------------------ EIP-3009

    function _auth(uint256 key, bool receive_, Auth memory a)
        internal
        view
        returns (uint8, bytes32, bytes32)
    {
        return vm.sign(key, transferAuthDigest(token, receive_, a));
    }

    function test_transferWithAuthorization() public {
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), bob, 25 * UNIT, 0, START + 60, NONCE));
        vm.assertFalse(token.authorizationState(alice, NONCE), "unused");
        vm.expectEmit(true, true, false, true, address(token));
        emit Stablecoin.AuthorizationUsed(alice, NONCE);
        vm.expectEmit(true, true, false, true, address(token));
        emit Stablecoin.Transfer(alice, bob, 25 * UNIT);
        vm.prank(carol); // a relayer: the buyer needs no gas
        token.transferWithAuthorization(alice, bob, 25 * UNIT, 0, START + 60, NONCE, v, r, s);
        vm.assertEq(token.balanceOf(bob), 25 * UNIT, "paid");
        vm.assertTrue(token.authorizationState(alice, NONCE), "used");
    }

    function test_transferWithAuthorization_bytesSignature() public {
        bytes memory sig = signBytes(
            ALICE_KEY,
            transferAuthDigest(token, false, Auth(alice, bob, 1, START - 1, START + 1, NONCE))
        );
        token.transferWithAuthorization(alice, bob, 1, START - 1, START + 1, NONCE, sig);
        vm.assertEq(token.balanceOf(bob), 1, "paid");
    }

    function test_transferWithAuthorization_revertsOnReplay() public {
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), bob, 1, 0, START + 60, NONCE));
        token.transferWithAuthorization(alice, bob, 1, 0, START + 60, NONCE, v, r, s);
        vm.expectRevert(
            abi.encodeWithSelector(Stablecoin.AuthorizationAlreadyUsed.selector, alice, NONCE)
        );
        token.transferWithAuthorization(alice, bob, 1, 0, START + 60, NONCE, v, r, s);
    }

    function test_transferWithAuthorization_revertsBeforeValidAfter() public {
        // validAfter is exclusive: at exactly validAfter the authorization is not yet valid.
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), bob, 1, START, START + 60, NONCE));
        vm.expectRevert(
            abi.encodeWithSelector(Stablecoin.AuthorizationNotYetValid.selector, START, START)
        );
        token.transferWithAuthorization(alice, bob, 1, START, START + 60, NONCE, v, r, s);
        vm.warp(START + 1);
        token.transferWithAuthorization(alice, bob, 1, START, START + 60, NONCE, v, r, s);
    }

    function test_transferWithAuthorization_revertsWhenExpired() public {
        // validBefore is exclusive.
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), bob, 1, 0, START, NONCE));
        vm.expectRevert(
            abi.encodeWithSelector(Stablecoin.AuthorizationExpired.selector, START, START)
        );
        token.transferWithAuthorization(alice, bob, 1, 0, START, NONCE, v, r, s);
    }

    function test_transferWithAuthorization_revertsForWrongSigner() public {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(
            MALLORY_KEY,
            transferAuthDigest(token, false, Auth(alice, mallory, 1, 0, START + 60, NONCE))
        );
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSigner.selector, mallory, alice));
        token.transferWithAuthorization(alice, mallory, 1, 0, START + 60, NONCE, v, r, s);
    }

    function test_transferWithAuthorization_revertsForTamperedValue() public {
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), bob, 1, 0, START + 60, NONCE));
        address other = recover(
            transferAuthDigest(token, false, Auth(alice, bob, 2, 0, START + 60, NONCE)), v, r, s
        );
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSigner.selector, other, alice));
        token.transferWithAuthorization(alice, bob, 2, 0, START + 60, NONCE, v, r, s);
    }

    function test_transferWithAuthorization_revertsForHighS() public {
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), bob, 1, 0, START + 60, NONCE));
        (uint8 v2, bytes32 r2, bytes32 s2) = highS(v, r, s);
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSignatureS.selector, s2));
        token.transferWithAuthorization(alice, bob, 1, 0, START + 60, NONCE, v2, r2, s2);
        // The same malleated signature in the bytes form.
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSignatureS.selector, s2));
        token.transferWithAuthorization(
            alice, bob, 1, 0, START + 60, NONCE, abi.encodePacked(r2, s2, v2)
        );
        // The canonical one still works.
        token.transferWithAuthorization(alice, bob, 1, 0, START + 60, NONCE, v, r, s);
    }

    function test_transferWithAuthorization_revertsForBadV() public {
        (, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), bob, 1, 0, START + 60, NONCE));
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSignatureV.selector, 1));
        token.transferWithAuthorization(alice, bob, 1, 0, START + 60, NONCE, 1, r, s);
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSignatureV.selector, 29));
        token.transferWithAuthorization(
            alice, bob, 1, 0, START + 60, NONCE, abi.encodePacked(r, s, uint8(29))
        );
    }

    function test_transferWithAuthorization_revertsWhenUnrecoverable() public {
        // r = 0 is not a curve point: ecrecover returns the zero address.
        vm.expectRevert(Stablecoin.InvalidSignature.selector);
        token.transferWithAuthorization(
            alice, bob, 1, 0, START + 60, NONCE, 27, bytes32(0), bytes32(uint256(1))
        );
        // Even when the claimed payer is the zero address.
        vm.expectRevert(Stablecoin.InvalidSignature.selector);
        token.transferWithAuthorization(
            address(0), bob, 0, 0, START + 60, NONCE, 27, bytes32(0), bytes32(uint256(1))
        );
    }

    function test_transferWithAuthorization_revertsForBadLength() public {
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSignatureLength.selector, 66));
        token.transferWithAuthorization(alice, bob, 1, 0, START + 60, NONCE, new bytes(66));
    }

    function test_transferWithAuthorization_revertsOnInsufficientBalance() public {
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(BOB_KEY, false, Auth(vm.addr(BOB_KEY), alice, 1, 0, START + 60, NONCE));
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InsufficientBalance.selector, bob, 0, 1));
        token.transferWithAuthorization(bob, alice, 1, 0, START + 60, NONCE, v, r, s);
    }

    function test_transferWithAuthorization_revertsToZeroAddress() public {
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), address(0), 1, 0, START + 60, NONCE));
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidReceiver.selector, address(0)));
        token.transferWithAuthorization(alice, address(0), 1, 0, START + 60, NONCE, v, r, s);
    }

    function test_transferAuthorizationCannotBeUsedAsReceive() public {
        // The typehash is part of the digest: a transfer authorization is not a receive one.
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), bob, 1, 0, START + 60, NONCE));
        address other = recover(
            transferAuthDigest(token, true, Auth(alice, bob, 1, 0, START + 60, NONCE)), v, r, s
        );
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSigner.selector, other, alice));
        vm.prank(bob);
        token.receiveWithAuthorization(alice, bob, 1, 0, START + 60, NONCE, v, r, s);
    }

    function test_receiveWithAuthorization() public {
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, true, Auth(vm.addr(ALICE_KEY), bob, 9, 0, START + 60, NONCE));
        vm.expectEmit(true, true, false, true, address(token));
        emit Stablecoin.AuthorizationUsed(alice, NONCE);
        vm.prank(bob);
        token.receiveWithAuthorization(alice, bob, 9, 0, START + 60, NONCE, v, r, s);
        vm.assertEq(token.balanceOf(bob), 9, "received");

        bytes32 nonce2 = keccak256("nonce-2");
        bytes memory sig = signBytes(
            ALICE_KEY, transferAuthDigest(token, true, Auth(alice, bob, 1, 0, START + 60, nonce2))
        );
        vm.prank(bob);
        token.receiveWithAuthorization(alice, bob, 1, 0, START + 60, nonce2, sig);
        vm.assertEq(token.balanceOf(bob), 10, "received twice");
    }

    function test_receiveWithAuthorization_revertsUnlessPayeeCalls() public {
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, true, Auth(vm.addr(ALICE_KEY), bob, 9, 0, START + 60, NONCE));
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.CallerMustBePayee.selector, mallory, bob));
        vm.prank(mallory);
        token.receiveWithAuthorization(alice, bob, 9, 0, START + 60, NONCE, v, r, s);
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.CallerMustBePayee.selector, mallory, bob));
        vm.prank(mallory);
        token.receiveWithAuthorization(
            alice, bob, 9, 0, START + 60, NONCE, abi.encodePacked(r, s, v)
        );
    }

    function test_receiveWithAuthorization_revertsForBadLength() public {
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSignatureLength.selector, 0));
        vm.prank(bob);
        token.receiveWithAuthorization(alice, bob, 9, 0, START + 60, NONCE, "");
    }

    function test_cancelAuthorization() public {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ALICE_KEY, cancelDigest(token, alice, NONCE));
        vm.expectEmit(true, true, false, true, address(token));
        emit Stablecoin.AuthorizationCanceled(alice, NONCE);
        vm.prank(carol);
        token.cancelAuthorization(alice, NONCE, v, r, s);
        vm.assertTrue(token.authorizationState(alice, NONCE), "canceled");

        // The canceled authorization can no longer be used...
        (uint8 tv, bytes32 tr, bytes32 ts) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), bob, 1, 0, START + 60, NONCE));
        vm.expectRevert(
            abi.encodeWithSelector(Stablecoin.AuthorizationAlreadyUsed.selector, alice, NONCE)
        );
        token.transferWithAuthorization(alice, bob, 1, 0, START + 60, NONCE, tv, tr, ts);
        // ...nor canceled again.
        vm.expectRevert(
            abi.encodeWithSelector(Stablecoin.AuthorizationAlreadyUsed.selector, alice, NONCE)
        );
        token.cancelAuthorization(alice, NONCE, v, r, s);
    }

    function test_cancelAuthorization_bytesSignature() public {
        token.cancelAuthorization(
            alice, NONCE, signBytes(ALICE_KEY, cancelDigest(token, alice, NONCE))
        );
        vm.assertTrue(token.authorizationState(alice, NONCE), "canceled");
    }

    function test_cancelAuthorization_revertsForUsedNonce() public {
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), bob, 1, 0, START + 60, NONCE));
        token.transferWithAuthorization(alice, bob, 1, 0, START + 60, NONCE, v, r, s);
        vm.expectRevert(
            abi.encodeWithSelector(Stablecoin.AuthorizationAlreadyUsed.selector, alice, NONCE)
        );
        token.cancelAuthorization(
            alice, NONCE, signBytes(ALICE_KEY, cancelDigest(token, alice, NONCE))
        );
    }

    function test_cancelAuthorization_revertsForWrongSigner() public {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(MALLORY_KEY, cancelDigest(token, alice, NONCE));
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSigner.selector, mallory, alice));
        token.cancelAuthorization(alice, NONCE, v, r, s);
    }

    function test_cancelAuthorization_revertsForBadLength() public {
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSignatureLength.selector, 65 + 1));
        token.cancelAuthorization(alice, NONCE, new bytes(66));
    }

    function test_authorizationIsBoundToChain() public {
        // Signed for this chain, submitted after a fork to another chain id: rejected.
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), bob, 1, 0, START + 60, NONCE));
        vm.chainId(4242);
        // The token hashes with the new chain id and recovers an unrelated address.
        address other = recover(
            transferAuthDigest(token, false, Auth(alice, bob, 1, 0, START + 60, NONCE)), v, r, s
        );
        vm.expectRevert(abi.encodeWithSelector(Stablecoin.InvalidSigner.selector, other, alice));
        token.transferWithAuthorization(alice, bob, 1, 0, START + 60, NONCE, v, r, s);
    }

    function test_signaturesForNewChainPassAfterFork() public {
        vm.chainId(4242);
        // Signed for the new chain id (the helpers hash with block.chainid): accepted.
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), bob, 7, 0, START + 60, NONCE));
        token.transferWithAuthorization(alice, bob, 7, 0, START + 60, NONCE, v, r, s);
        vm.assertEq(token.balanceOf(bob), 7, "paid on the new chain");
        (v, r, s) = permitSig(token, ALICE_KEY, bob, 5, START);
        token.permit(alice, bob, 5, START, v, r, s);
        vm.assertEq(token.allowance(alice, bob), 5, "permit on the new chain");
        vm.assertEq(token.DOMAIN_SEPARATOR(), domainSeparator(token), "domain of chain 4242");
    }

    /// ecrecover as the token calls it; asserts that the signature recovers to someone, so
    /// the token's error is InvalidSigner (not InvalidSignature). Call before expectRevert:
    /// the precompile call would consume it.
    function recover(bytes32 hash, uint8 v, bytes32 r, bytes32 s)
        internal
        pure
        returns (address a)
    {
        a = ecrecover(hash, v, r, s);
        vm.assertTrue(a != address(0) && a != vm.addr(ALICE_KEY), "recovers an unrelated address");
    }

    // ------------------------------------------------------------------ fuzz

    function testFuzz_transferWithAuthorization(uint96 value, bytes32 nonce, uint32 window) public {
        value = uint96(bound(value, 0, 1_000 * UNIT));
        uint256 validBefore = START + 1 + uint256(window);
        (uint8 v, bytes32 r, bytes32 s) =
            _auth(ALICE_KEY, false, Auth(vm.addr(ALICE_KEY), bob, value, 0, validBefore, nonce));
        token.transferWithAuthorization(alice, bob, value, 0, validBefore, nonce, v, r, s);
        vm.assertEq(token.balanceOf(bob), value, "paid");
        vm.assertEq(token.balanceOf(alice) + value, 1_000 * UNIT, "conserved");
    }

    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + x % (hi - lo + 1);
    }
}
