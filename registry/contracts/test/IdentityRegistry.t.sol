// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestBase} from "./utils/TestBase.sol";
import {IdentityRegistry} from "../src/IdentityRegistry.sol";

/// @dev A contract wallet answering ERC-1271 as told.
contract Erc1271Wallet {
    enum Mode {
        Accept,
        Refuse,
        Revert
    }

    Mode public mode;
    bytes32 public expectedHash;

    function set(Mode mode_, bytes32 expectedHash_) external {
        mode = mode_;
        expectedHash = expectedHash_;
    }

    function isValidSignature(bytes32 hash, bytes calldata) external view returns (bytes4) {
        if (mode == Mode.Revert) revert("no");
        if (mode == Mode.Refuse || hash != expectedHash) return 0xffffffff;
        return 0x1626ba7e;
    }
}

/// @dev An ERC-721 receiver answering as told.
contract Receiver {
    enum Mode {
        Accept,
        WrongAnswer,
        Revert
    }

    Mode public mode;
    address public lastOperator;
    address public lastFrom;
    uint256 public lastTokenId;
    bytes public lastData;

    function set(Mode mode_) external {
        mode = mode_;
    }

    function onERC721Received(address operator, address from, uint256 tokenId, bytes calldata data)
        external
        returns (bytes4)
    {
        if (mode == Mode.Revert) revert("refused");
        lastOperator = operator;
        lastFrom = from;
        lastTokenId = tokenId;
        lastData = data;
        return mode == Mode.Accept ? bytes4(0x150b7a02) : bytes4(0xdeadbeef);
    }

    function register(IdentityRegistry registry, string calldata uri) external returns (uint256) {
        return registry.register(uri);
    }
}

/// @dev A contract that answers every call with nothing (no ERC-721 hook).
contract Silent {
    fallback() external {}

    function register(IdentityRegistry registry) external returns (uint256) {
        return registry.register();
    }
}

contract IdentityRegistryTest is TestBase {
    IdentityRegistry internal registry;

    string internal constant URI = "ipfs://bafy-registration";
    string internal constant KEY = "agentWallet";

    function setUp() public {
        vm.warp(START);
        registry = new IdentityRegistry();
    }

    // ------------------------------------------------------------------ helpers

    /// The wallet digest from first principles (not from the contract).
    function walletDigest(uint256 agentId, address wallet, address owner, uint256 deadline)
        internal
        view
        returns (bytes32)
    {
        bytes32 separator = keccak256(
            abi.encode(
                keccak256(
                    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
                ),
                keccak256(bytes("ERC8004IdentityRegistry")),
                keccak256(bytes("1")),
                block.chainid,
                address(registry)
            )
        );
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256(
                    "AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)"
                ),
                agentId,
                wallet,
                owner,
                deadline
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", separator, structHash));
    }

    function registerAs(address who, string memory uri) internal returns (uint256 agentId) {
        vm.prank(who);
        agentId = registry.register(uri);
    }

    function notAuthorized(address caller, uint256 agentId) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IdentityRegistry.NotAuthorized.selector, caller, agentId);
    }

    function nonexistent(uint256 agentId) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IdentityRegistry.ERC721NonexistentToken.selector, agentId);
    }

    // ------------------------------------------------------------------ registration

    function test_registerWithURI() public {
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.Transfer(address(0), alice, 0);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataUpdate(0);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.Registered(0, URI, alice);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataSet(0, KEY, KEY, abi.encodePacked(alice));
        uint256 id = registerAs(alice, URI);

        vm.assertEq(id, 0, "first id is 0");
        vm.assertEq(registry.ownerOf(0), alice, "owner");
        vm.assertEq(registry.balanceOf(alice), 1, "balance");
        vm.assertEq(registry.tokenURI(0), URI, "uri");
        vm.assertEq(registry.getAgentWallet(0), alice, "wallet defaults to the owner");
        vm.assertEq(registry.getMetadata(0, KEY), abi.encodePacked(alice), "wallet metadata");
        vm.assertEq(registry.totalAgents(), 1, "total");
        vm.assertEq(registerAs(bob, URI), 1, "ids count up");
        vm.assertEq(registry.totalAgents(), 2, "total");
    }

    function test_registerWithoutURI() public {
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.Transfer(address(0), alice, 0);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.Registered(0, "", alice);
        vm.prank(alice);
        uint256 id = registry.register();
        vm.assertEq(registry.tokenURI(id), "", "no uri yet");
        vm.assertEq(registry.getAgentWallet(id), alice, "wallet");
    }

    function test_registerWithMetadata() public {
        IdentityRegistry.MetadataEntry[] memory entries = new IdentityRegistry.MetadataEntry[](2);
        entries[0] = IdentityRegistry.MetadataEntry("agentName", bytes("weather"));
        entries[1] = IdentityRegistry.MetadataEntry("agoraRegistry", abi.encode(carol, alice));
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataSet(0, KEY, KEY, abi.encodePacked(alice));
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataSet(0, "agentName", "agentName", bytes("weather"));
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataSet(
            0, "agoraRegistry", "agoraRegistry", abi.encode(carol, alice)
        );
        vm.prank(alice);
        uint256 id = registry.register(URI, entries);
        vm.assertEq(registry.getMetadata(id, "agentName"), bytes("weather"), "name");
        vm.assertEq(registry.getMetadata(id, "agoraRegistry"), abi.encode(carol, alice), "link");
        vm.assertEq(registry.getMetadata(id, "missing"), "", "unset key");
        vm.assertEq(registry.tokenURI(id), URI, "uri");
    }

    function test_register_revertsOnReservedKey() public {
        IdentityRegistry.MetadataEntry[] memory entries = new IdentityRegistry.MetadataEntry[](1);
        entries[0] = IdentityRegistry.MetadataEntry(KEY, abi.encodePacked(mallory));
        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.ReservedMetadataKey.selector, KEY));
        vm.prank(alice);
        registry.register(URI, entries);
    }

    function test_registerFromContract() public {
        Receiver receiver = new Receiver();
        uint256 id = receiver.register(registry, URI);
        vm.assertEq(registry.ownerOf(id), address(receiver), "owner");
        vm.assertEq(receiver.lastOperator(), address(receiver), "operator");
        vm.assertEq(receiver.lastFrom(), address(0), "minted");

        receiver.set(Receiver.Mode.WrongAnswer);
        vm.expectRevert(
            abi.encodeWithSelector(
                IdentityRegistry.ERC721InvalidReceiver.selector, address(receiver)
            )
        );
        receiver.register(registry, URI);

        Silent silent = new Silent();
        vm.expectRevert(
            abi.encodeWithSelector(IdentityRegistry.ERC721InvalidReceiver.selector, address(silent))
        );
        silent.register(registry);
    }

    function test_registerWithMetadataFromContract_refused() public {
        Receiver receiver = new Receiver();
        receiver.set(Receiver.Mode.Revert);
        IdentityRegistry.MetadataEntry[] memory entries;
        vm.expectRevert(
            abi.encodeWithSelector(
                IdentityRegistry.ERC721InvalidReceiver.selector, address(receiver)
            )
        );
        vm.prank(address(receiver));
        registry.register(URI, entries);
    }

    // ------------------------------------------------------------------ URI and metadata

    function test_setAgentURI() public {
        uint256 id = registerAs(alice, URI);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataUpdate(id);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.URIUpdated(id, "https://a.example/agent.json", alice);
        vm.prank(alice);
        registry.setAgentURI(id, "https://a.example/agent.json");
        vm.assertEq(registry.tokenURI(id), "https://a.example/agent.json", "owner");

        vm.prank(alice);
        registry.approve(bob, id);
        vm.prank(bob);
        registry.setAgentURI(id, "by-approved");
        vm.assertEq(registry.tokenURI(id), "by-approved", "approved");

        vm.prank(alice);
        registry.setApprovalForAll(carol, true);
        vm.prank(carol);
        registry.setAgentURI(id, "by-operator");
        vm.assertEq(registry.tokenURI(id), "by-operator", "operator");

        vm.expectRevert(notAuthorized(mallory, id));
        vm.prank(mallory);
        registry.setAgentURI(id, "stolen");
        vm.expectRevert(nonexistent(7));
        vm.prank(alice);
        registry.setAgentURI(7, "nothing");
    }

    function test_setMetadata() public {
        uint256 id = registerAs(alice, URI);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataSet(id, "agentName", "agentName", bytes("w"));
        vm.prank(alice);
        registry.setMetadata(id, "agentName", bytes("w"));
        vm.assertEq(registry.getMetadata(id, "agentName"), bytes("w"), "set");

        vm.expectRevert(abi.encodeWithSelector(IdentityRegistry.ReservedMetadataKey.selector, KEY));
        vm.prank(alice);
        registry.setMetadata(id, KEY, abi.encodePacked(mallory));
        vm.expectRevert(notAuthorized(mallory, id));
        vm.prank(mallory);
        registry.setMetadata(id, "agentName", bytes("x"));
    }

    // ------------------------------------------------------------------ agent wallet

    function test_setAgentWallet_eoa() public {
        uint256 id = registerAs(alice, URI);
        uint256 deadline = START + 5 minutes;
        bytes memory sig = signBytes(BOB_KEY, walletDigest(id, bob, alice, deadline));
        vm.assertEq(
            registry.agentWalletDigest(id, bob, alice, deadline),
            walletDigest(id, bob, alice, deadline),
            "digest"
        );
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataSet(id, KEY, KEY, abi.encodePacked(bob));
        vm.prank(alice);
        registry.setAgentWallet(id, bob, deadline, sig);
        vm.assertEq(registry.getAgentWallet(id), bob, "wallet");
        vm.assertEq(registry.getMetadata(id, KEY), abi.encodePacked(bob), "metadata");

        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataSet(id, KEY, KEY, "");
        vm.prank(alice);
        registry.unsetAgentWallet(id);
        vm.assertEq(registry.getAgentWallet(id), address(0), "cleared");
        vm.assertEq(registry.getMetadata(id, KEY), "", "cleared metadata");
    }

    function test_setAgentWallet_reverts() public {
        uint256 id = registerAs(alice, URI);
        uint256 deadline = START + 60;
        bytes memory sig = signBytes(BOB_KEY, walletDigest(id, bob, alice, deadline));

        vm.expectRevert(notAuthorized(mallory, id));
        vm.prank(mallory);
        registry.setAgentWallet(id, bob, deadline, sig);

        vm.startPrank(alice);
        vm.expectRevert(IdentityRegistry.InvalidWallet.selector);
        registry.setAgentWallet(id, address(0), deadline, sig);

        vm.expectRevert(
            abi.encodeWithSelector(IdentityRegistry.DeadlineExpired.selector, START - 1, START)
        );
        registry.setAgentWallet(id, bob, START - 1, sig);

        uint256 far = START + 5 minutes + 1;
        vm.expectRevert(
            abi.encodeWithSelector(IdentityRegistry.DeadlineTooFar.selector, far, START + 5 minutes)
        );
        registry.setAgentWallet(id, bob, far, sig);

        bytes memory invalid =
            abi.encodeWithSelector(IdentityRegistry.InvalidWalletSignature.selector, bob);
        // Signed by someone else.
        vm.expectRevert(invalid);
        registry.setAgentWallet(
            id, bob, deadline, signBytes(MALLORY_KEY, walletDigest(id, bob, alice, deadline))
        );
        // For another owner: the signature binds the owner.
        vm.expectRevert(invalid);
        registry.setAgentWallet(
            id, bob, deadline, signBytes(BOB_KEY, walletDigest(id, bob, carol, deadline))
        );
        // The malleable high-s twin.
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(BOB_KEY, walletDigest(id, bob, alice, deadline));
        (v, r, s) = highS(v, r, s);
        vm.expectRevert(invalid);
        registry.setAgentWallet(id, bob, deadline, abi.encodePacked(r, s, v));
        // Not 65 bytes.
        vm.expectRevert(invalid);
        registry.setAgentWallet(id, bob, deadline, abi.encodePacked(r, s));
        vm.stopPrank();

        vm.expectRevert(notAuthorized(mallory, id));
        vm.prank(mallory);
        registry.unsetAgentWallet(id);
    }

    function test_setAgentWallet_erc1271() public {
        uint256 id = registerAs(alice, URI);
        Erc1271Wallet wallet = new Erc1271Wallet();
        uint256 deadline = START + 5 minutes;
        bytes32 digest = walletDigest(id, address(wallet), alice, deadline);
        bytes memory invalid = abi.encodeWithSelector(
            IdentityRegistry.InvalidWalletSignature.selector, address(wallet)
        );

        wallet.set(Erc1271Wallet.Mode.Refuse, digest);
        vm.expectRevert(invalid);
        vm.prank(alice);
        registry.setAgentWallet(id, address(wallet), deadline, "anything");

        wallet.set(Erc1271Wallet.Mode.Revert, digest);
        vm.expectRevert(invalid);
        vm.prank(alice);
        registry.setAgentWallet(id, address(wallet), deadline, "anything");

        // A contract with no isValidSignature answers nothing.
        Silent silent = new Silent();
        vm.expectRevert(
            abi.encodeWithSelector(
                IdentityRegistry.InvalidWalletSignature.selector, address(silent)
            )
        );
        vm.prank(alice);
        registry.setAgentWallet(id, address(silent), deadline, "anything");

        wallet.set(Erc1271Wallet.Mode.Accept, digest);
        vm.prank(alice);
        registry.setAgentWallet(id, address(wallet), deadline, "anything");
        vm.assertEq(registry.getAgentWallet(id), address(wallet), "contract wallet");
    }

    function test_walletClearedOnTransfer() public {
        uint256 id = registerAs(alice, URI);
        vm.prank(alice);
        registry.approve(carol, id);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.MetadataSet(id, KEY, KEY, "");
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.Transfer(alice, bob, id);
        vm.prank(alice);
        registry.transferFrom(alice, bob, id);
        vm.assertEq(registry.ownerOf(id), bob, "new owner");
        vm.assertEq(registry.getAgentWallet(id), address(0), "wallet cleared");
        vm.assertEq(registry.getApproved(id), address(0), "approval cleared");
        vm.assertEq(registry.balanceOf(alice), 0, "alice");
        vm.assertEq(registry.balanceOf(bob), 1, "bob");
        vm.assertFalse(registry.isAuthorizedOrOwner(alice, id), "alice lost it");
        vm.assertTrue(registry.isAuthorizedOrOwner(bob, id), "bob owns it");
    }

    // ------------------------------------------------------------------ ERC-721

    function test_approvals() public {
        uint256 id = registerAs(alice, URI);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.Approval(alice, bob, id);
        vm.prank(alice);
        registry.approve(bob, id);
        vm.assertEq(registry.getApproved(id), bob, "approved");
        vm.assertTrue(registry.isAuthorizedOrOwner(bob, id), "approved may manage");

        vm.expectEmit(true, true, true, true, address(registry));
        emit IdentityRegistry.ApprovalForAll(alice, carol, true);
        vm.prank(alice);
        registry.setApprovalForAll(carol, true);
        vm.assertTrue(registry.isApprovedForAll(alice, carol), "operator");
        vm.prank(carol);
        registry.approve(mallory, id);
        vm.assertEq(registry.getApproved(id), mallory, "operator approves");

        vm.expectRevert(
            abi.encodeWithSelector(IdentityRegistry.ERC721InvalidApprover.selector, bob)
        );
        vm.prank(bob);
        registry.approve(bob, id);
        vm.expectRevert(
            abi.encodeWithSelector(IdentityRegistry.ERC721InvalidOperator.selector, address(0))
        );
        vm.prank(alice);
        registry.setApprovalForAll(address(0), true);
        vm.assertFalse(registry.isAuthorizedOrOwner(bob, id), "bob no longer approved");
    }

    function test_views_revertForUnknownAgent() public {
        vm.expectRevert(nonexistent(0));
        registry.ownerOf(0);
        vm.expectRevert(nonexistent(0));
        registry.tokenURI(0);
        vm.expectRevert(nonexistent(0));
        registry.getApproved(0);
        vm.expectRevert(nonexistent(0));
        registry.isAuthorizedOrOwner(alice, 0);
        vm.expectRevert(
            abi.encodeWithSelector(IdentityRegistry.ERC721InvalidOwner.selector, address(0))
        );
        registry.balanceOf(address(0));
        vm.assertEq(registry.getAgentWallet(0), address(0), "no wallet");
        vm.assertEq(registry.getMetadata(0, KEY), "", "no wallet metadata");
    }

    function test_transferFrom_reverts() public {
        uint256 id = registerAs(alice, URI);
        vm.expectRevert(
            abi.encodeWithSelector(IdentityRegistry.ERC721InvalidReceiver.selector, address(0))
        );
        vm.prank(alice);
        registry.transferFrom(alice, address(0), id);
        vm.expectRevert(
            abi.encodeWithSelector(IdentityRegistry.ERC721InsufficientApproval.selector, bob, id)
        );
        vm.prank(bob);
        registry.transferFrom(alice, bob, id);
        vm.expectRevert(
            abi.encodeWithSelector(IdentityRegistry.ERC721IncorrectOwner.selector, carol, id, alice)
        );
        vm.prank(alice);
        registry.transferFrom(carol, bob, id);
        vm.expectRevert(nonexistent(9));
        vm.prank(alice);
        registry.transferFrom(alice, bob, 9);
    }

    function test_safeTransferFrom() public {
        uint256 id = registerAs(alice, URI);
        Receiver receiver = new Receiver();
        vm.prank(alice);
        registry.safeTransferFrom(alice, address(receiver), id, "hello");
        vm.assertEq(registry.ownerOf(id), address(receiver), "received");
        vm.assertEq(receiver.lastOperator(), alice, "operator");
        vm.assertEq(receiver.lastFrom(), alice, "from");
        vm.assertEq(receiver.lastTokenId(), id, "id");
        vm.assertEq(receiver.lastData(), bytes("hello"), "data");

        uint256 id2 = registerAs(alice, URI);
        vm.prank(alice);
        registry.safeTransferFrom(alice, bob, id2);
        vm.assertEq(registry.ownerOf(id2), bob, "to an EOA");

        receiver.set(Receiver.Mode.WrongAnswer);
        bytes memory refused = abi.encodeWithSelector(
            IdentityRegistry.ERC721InvalidReceiver.selector, address(receiver)
        );
        vm.expectRevert(refused);
        vm.prank(bob);
        registry.safeTransferFrom(bob, address(receiver), id2);
        receiver.set(Receiver.Mode.Revert);
        vm.expectRevert(refused);
        vm.prank(bob);
        registry.safeTransferFrom(bob, address(receiver), id2, "");
    }

    function test_supportsInterface() public view {
        vm.assertTrue(registry.supportsInterface(0x01ffc9a7), "ERC-165");
        vm.assertTrue(registry.supportsInterface(0x80ac58cd), "ERC-721");
        vm.assertTrue(registry.supportsInterface(0x5b5e139f), "ERC-721 metadata");
        vm.assertTrue(registry.supportsInterface(0x49064906), "ERC-4906");
        vm.assertFalse(registry.supportsInterface(0xffffffff), "not 0xffffffff");
        vm.assertEq(registry.name(), "AgentIdentity", "name");
        vm.assertEq(registry.symbol(), "AGENT", "symbol");
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
        ) = registry.eip712Domain();
        vm.assertEq(uint256(uint8(fields)), 0x0f, "fields");
        vm.assertEq(name_, "ERC8004IdentityRegistry", "name");
        vm.assertEq(version_, "1", "version");
        vm.assertEq(chainId, block.chainid, "chain");
        vm.assertEq(verifying, address(registry), "contract");
        vm.assertEq(salt, bytes32(0), "salt");
        vm.assertEq(extensions.length, 0, "extensions");
        vm.assertEq(
            registry.DOMAIN_SEPARATOR(),
            keccak256(
                abi.encode(
                    keccak256(
                        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
                    ),
                    keccak256(bytes(name_)),
                    keccak256(bytes(version_)),
                    chainId,
                    verifying
                )
            ),
            "separator"
        );

        // After a fork the separator follows the new chain id.
        uint256 id = registerAs(alice, URI);
        vm.chainId(4242);
        vm.assertEq(
            registry.agentWalletDigest(id, bob, alice, START),
            walletDigest(id, bob, alice, START),
            "digest on the new chain"
        );
        vm.prank(alice);
        registry.setAgentWallet(
            id, bob, START, signBytes(BOB_KEY, walletDigest(id, bob, alice, START))
        );
        vm.assertEq(registry.getAgentWallet(id), bob, "set on the new chain");
    }
}
