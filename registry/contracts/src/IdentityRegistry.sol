// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title IdentityRegistry
/// @notice The ERC-8004 ("Trustless Agents") Identity Registry: every agent is an ERC-721 token
///         whose id is its `agentId` and whose token URI (`agentURI`) resolves to the agent's
///         registration file. Owners (and their ERC-721 operators) set the URI, free-form
///         on-chain metadata, and the agent's payment wallet, which the new wallet must sign
///         for.
/// @dev Implements the interface of ERC-8004 as published (ethereum/ERCs `ERCS/erc-8004.md`
///      and the reference `IdentityRegistryUpgradeable` of erc-8004/erc-8004-contracts):
///      function signatures, events and return types are theirs, as are the EIP-712 domain
///      (name "ERC8004IdentityRegistry", version "1") and the `AgentWalletSet` typed data, so
///      a wallet signature made for the reference contract verifies here. Differences are
///      ours: a plain (not upgradeable, ownerless) contract, custom errors instead of revert
///      strings (ERC-6093 errors for the ERC-721 part), and the receiver hook of a
///      registration runs last, after every write.
///
///      - Agent ids count up from 0 in registration order.
///      - `agentWallet` is a reserved metadata key: it cannot be set by `setMetadata` or at
///        registration, starts as the owner, changes only through `setAgentWallet` (with the
///        new wallet's EIP-712 signature, or ERC-1271 approval for contract wallets, and a
///        deadline at most 5 minutes ahead), is cleared by `unsetAgentWallet` and by every
///        transfer (the new owner must verify a wallet again). `getMetadata(id, "agentWallet")`
///        is the wallet's 20 address bytes, or empty when it is cleared.
///      - `tokenURI` is the `agentURI` set last (empty for `register()` until `setAgentURI`).
///        URI changes emit ERC-4906 `MetadataUpdate` as well as `URIUpdated`.
contract IdentityRegistry {
    // ------------------------------------------------------------------ types

    /// @notice An on-chain metadata entry given at registration.
    /// @param metadataKey The key (not "agentWallet").
    /// @param metadataValue The value.
    struct MetadataEntry {
        string metadataKey;
        bytes metadataValue;
    }

    // ------------------------------------------------------------------ constants

    /// @notice ERC-721 collection name.
    string public constant name = "AgentIdentity";

    /// @notice ERC-721 collection symbol.
    string public constant symbol = "AGENT";

    /// @notice The reserved metadata key of the agent's payment wallet.
    string public constant AGENT_WALLET_KEY = "agentWallet";

    /// @notice How far ahead (seconds) a wallet signature's deadline may be.
    uint256 public constant MAX_DEADLINE_DELAY = 5 minutes;

    /// @notice EIP-712 domain typehash.
    bytes32 public constant EIP712_DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );

    /// @notice EIP-712 typehash of the new wallet's consent.
    bytes32 public constant AGENT_WALLET_SET_TYPEHASH = keccak256(
        "AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)"
    );

    /// @notice EIP-712 domain name.
    string public constant EIP712_NAME = "ERC8004IdentityRegistry";

    /// @notice EIP-712 domain version.
    string public constant EIP712_VERSION = "1";

    bytes32 private constant AGENT_WALLET_KEY_HASH = keccak256("agentWallet");

    /// @dev ERC-1271 `isValidSignature(bytes32,bytes)`, also its magic value.
    bytes4 private constant ERC1271_MAGIC_VALUE = 0x1626ba7e;

    /// @dev ERC-721 `onERC721Received(address,address,uint256,bytes)`, also its magic value.
    bytes4 private constant ERC721_RECEIVED = 0x150b7a02;

    /// @dev secp256k1n / 2: signatures with a larger s are malleable copies and rejected.
    uint256 private constant HALF_CURVE_ORDER =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    // ------------------------------------------------------------------ state

    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;

    uint256 private _nextAgentId;
    mapping(uint256 agentId => address) private _owners;
    mapping(address owner => uint256) private _balances;
    mapping(uint256 agentId => address) private _tokenApprovals;
    mapping(address owner => mapping(address operator => bool)) private _operatorApprovals;
    mapping(uint256 agentId => string) private _agentURIs;
    mapping(uint256 agentId => mapping(string key => bytes)) private _metadata;
    mapping(uint256 agentId => address) private _agentWallets;

    // ------------------------------------------------------------------ events

    /// @notice ERC-721: `tokenId` moved from `from` to `to` (from zero at registration).
    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);

    /// @notice ERC-721: `owner` let `approved` transfer `tokenId`.
    event Approval(address indexed owner, address indexed approved, uint256 indexed tokenId);

    /// @notice ERC-721: `owner` let (or stopped letting) `operator` manage all its agents.
    event ApprovalForAll(address indexed owner, address indexed operator, bool approved);

    /// @notice ERC-4906: the token URI of `_tokenId` changed.
    event MetadataUpdate(uint256 _tokenId);

    /// @notice ERC-8004: a new agent was registered.
    event Registered(uint256 indexed agentId, string agentURI, address indexed owner);

    /// @notice ERC-8004: an on-chain metadata value was set (empty when cleared).
    event MetadataSet(
        uint256 indexed agentId,
        string indexed indexedMetadataKey,
        string metadataKey,
        bytes metadataValue
    );

    /// @notice ERC-8004: the agent URI changed.
    event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);

    // ------------------------------------------------------------------ errors

    /// @notice ERC-6093: the zero address owns nothing.
    error ERC721InvalidOwner(address owner);

    /// @notice ERC-6093: no agent has this id.
    error ERC721NonexistentToken(uint256 tokenId);

    /// @notice ERC-6093: `sender` is not the owner of `tokenId`, `owner` is.
    error ERC721IncorrectOwner(address sender, uint256 tokenId, address owner);

    /// @notice ERC-6093: the receiver is zero or a contract that refused the token.
    error ERC721InvalidReceiver(address receiver);

    /// @notice ERC-6093: `operator` may not transfer `tokenId`.
    error ERC721InsufficientApproval(address operator, uint256 tokenId);

    /// @notice ERC-6093: `approver` may not approve for this agent.
    error ERC721InvalidApprover(address approver);

    /// @notice ERC-6093: the zero address cannot be an operator.
    error ERC721InvalidOperator(address operator);

    /// @notice The caller is neither the agent's owner nor approved for it.
    error NotAuthorized(address caller, uint256 agentId);

    /// @notice "agentWallet" is set only through `setAgentWallet`.
    error ReservedMetadataKey(string metadataKey);

    /// @notice The new wallet is the zero address (use `unsetAgentWallet`).
    error InvalidWallet();

    /// @notice The wallet signature's deadline has passed.
    error DeadlineExpired(uint256 deadline, uint256 timestamp);

    /// @notice The wallet signature's deadline is more than `MAX_DEADLINE_DELAY` ahead.
    error DeadlineTooFar(uint256 deadline, uint256 latest);

    /// @notice Neither an EIP-712 signature by `wallet` nor its ERC-1271 approval.
    error InvalidWalletSignature(address wallet);

    // ------------------------------------------------------------------ constructor

    constructor() {
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
    }

    // ------------------------------------------------------------------ ERC-8004 registration

    /// @notice Registers a new agent owned by the caller, with no agent URI yet.
    /// @return agentId The new agent's id.
    function register() external returns (uint256 agentId) {
        agentId = _register("", false);
        _checkOnERC721Received(msg.sender, address(0), msg.sender, agentId, "");
    }

    /// @notice Registers a new agent owned by the caller.
    /// @param agentURI Where the agent's registration file is (https, ipfs or data URI).
    /// @return agentId The new agent's id.
    function register(string calldata agentURI) external returns (uint256 agentId) {
        agentId = _register(agentURI, true);
        _checkOnERC721Received(msg.sender, address(0), msg.sender, agentId, "");
    }

    /// @notice Registers a new agent owned by the caller, with on-chain metadata.
    /// @param agentURI Where the agent's registration file is (https, ipfs or data URI).
    /// @param metadata Metadata entries (none may use the key "agentWallet").
    /// @return agentId The new agent's id.
    function register(string calldata agentURI, MetadataEntry[] calldata metadata)
        external
        returns (uint256 agentId)
    {
        agentId = _register(agentURI, true);
        for (uint256 i = 0; i < metadata.length; ++i) {
            _setMetadata(agentId, metadata[i].metadataKey, metadata[i].metadataValue);
        }
        _checkOnERC721Received(msg.sender, address(0), msg.sender, agentId, "");
    }

    /// @notice Replaces the agent URI (owner or approved).
    /// @param agentId The agent.
    /// @param newURI The new URI.
    function setAgentURI(uint256 agentId, string calldata newURI) external {
        _requireAuthorized(agentId);
        _setAgentURI(agentId, newURI);
        emit URIUpdated(agentId, newURI, msg.sender);
    }

    /// @notice Sets an on-chain metadata value (owner or approved); not "agentWallet".
    /// @param agentId The agent.
    /// @param metadataKey The key.
    /// @param metadataValue The value (empty clears it).
    function setMetadata(uint256 agentId, string calldata metadataKey, bytes calldata metadataValue)
        external
    {
        _requireAuthorized(agentId);
        _setMetadata(agentId, metadataKey, metadataValue);
    }

    /// @notice An on-chain metadata value (empty if unset). For "agentWallet": the wallet's 20
    ///         bytes, or empty when cleared.
    /// @param agentId The agent.
    /// @param metadataKey The key.
    /// @return The value.
    function getMetadata(uint256 agentId, string calldata metadataKey)
        external
        view
        returns (bytes memory)
    {
        if (keccak256(bytes(metadataKey)) == AGENT_WALLET_KEY_HASH) {
            address wallet = _agentWallets[agentId];
            return wallet == address(0) ? bytes("") : abi.encodePacked(wallet);
        }
        return _metadata[agentId][metadataKey];
    }

    /// @notice Sets the agent's payment wallet (owner or approved), with the new wallet's
    ///         consent: its EIP-712 signature of `AgentWalletSet(agentId, newWallet, owner,
    ///         deadline)` (see `agentWalletDigest`), or, for a contract wallet, its ERC-1271
    ///         approval of that digest.
    /// @param agentId The agent.
    /// @param newWallet The wallet (not zero).
    /// @param deadline Last timestamp the consent is good for; at most `MAX_DEADLINE_DELAY`
    ///        seconds ahead.
    /// @param signature 65 bytes r ‖ s ‖ v (low s) from an EOA, or what the wallet's
    ///        `isValidSignature` accepts.
    function setAgentWallet(
        uint256 agentId,
        address newWallet,
        uint256 deadline,
        bytes calldata signature
    ) external {
        address owner = _requireAuthorized(agentId);
        if (newWallet == address(0)) revert InvalidWallet();
        if (block.timestamp > deadline) revert DeadlineExpired(deadline, block.timestamp);
        if (deadline > block.timestamp + MAX_DEADLINE_DELAY) {
            revert DeadlineTooFar(deadline, block.timestamp + MAX_DEADLINE_DELAY);
        }
        bytes32 digest = agentWalletDigest(agentId, newWallet, owner, deadline);
        if (!_isValidSignature(newWallet, digest, signature)) {
            revert InvalidWalletSignature(newWallet);
        }
        _setAgentWallet(agentId, newWallet);
    }

    /// @notice Clears the agent's payment wallet (owner or approved).
    /// @param agentId The agent.
    function unsetAgentWallet(uint256 agentId) external {
        _requireAuthorized(agentId);
        _setAgentWallet(agentId, address(0));
    }

    /// @notice The agent's payment wallet (zero when cleared or unknown).
    /// @param agentId The agent.
    /// @return The wallet.
    function getAgentWallet(uint256 agentId) external view returns (address) {
        return _agentWallets[agentId];
    }

    /// @notice Whether `spender` is the agent's owner or approved for it (reverts for an
    ///         unknown agent). The Reputation Registry refuses feedback from them.
    /// @param spender The account.
    /// @param agentId The agent.
    /// @return Whether it may manage the agent.
    function isAuthorizedOrOwner(address spender, uint256 agentId) external view returns (bool) {
        return _isAuthorized(_requireOwned(agentId), spender, agentId);
    }

    /// @notice The number of agents registered so far (the next agent's id).
    /// @return The count.
    function totalAgents() external view returns (uint256) {
        return _nextAgentId;
    }

    // ------------------------------------------------------------------ EIP-712

    /// @notice The EIP-712 domain separator; recomputed if the chain id changed (fork).
    /// @return The separator for the current chain.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    /// @notice EIP-5267 description of the EIP-712 domain.
    /// @return fields 0x0f: name, version, chainId and verifyingContract are set.
    /// @return name_ The domain name, "ERC8004IdentityRegistry".
    /// @return version_ The domain version, "1".
    /// @return chainId The current chain id.
    /// @return verifyingContract This contract.
    /// @return salt Unused (zero).
    /// @return extensions Unused (empty).
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name_,
            string memory version_,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (
            hex"0f",
            EIP712_NAME,
            EIP712_VERSION,
            block.chainid,
            address(this),
            bytes32(0),
            extensions
        );
    }

    /// @notice The digest a new wallet signs to become `agentId`'s wallet.
    /// @param agentId The agent.
    /// @param newWallet The wallet.
    /// @param owner The agent's owner at the time of `setAgentWallet`.
    /// @param deadline The consent's deadline.
    /// @return The EIP-712 digest.
    function agentWalletDigest(uint256 agentId, address newWallet, address owner, uint256 deadline)
        public
        view
        returns (bytes32)
    {
        bytes32 structHash =
            keccak256(abi.encode(AGENT_WALLET_SET_TYPEHASH, agentId, newWallet, owner, deadline));
        return keccak256(abi.encodePacked(hex"1901", DOMAIN_SEPARATOR(), structHash));
    }

    // ------------------------------------------------------------------ ERC-721

    /// @notice ERC-165.
    /// @param interfaceId The interface.
    /// @return Whether it is ERC-165, ERC-721, ERC-721 metadata or ERC-4906.
    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7 // ERC-165
            || interfaceId == 0x80ac58cd // ERC-721
            || interfaceId == 0x5b5e139f // ERC-721 metadata
            || interfaceId == 0x49064906; // ERC-4906
    }

    /// @notice ERC-721: how many agents `owner` has.
    /// @param owner The owner (not zero).
    /// @return The count.
    function balanceOf(address owner) external view returns (uint256) {
        if (owner == address(0)) revert ERC721InvalidOwner(address(0));
        return _balances[owner];
    }

    /// @notice ERC-721: the agent's owner (reverts for an unknown agent).
    /// @param tokenId The agent.
    /// @return The owner.
    function ownerOf(uint256 tokenId) external view returns (address) {
        return _requireOwned(tokenId);
    }

    /// @notice ERC-721 metadata: the agent URI (reverts for an unknown agent).
    /// @param tokenId The agent.
    /// @return The URI (empty until set).
    function tokenURI(uint256 tokenId) external view returns (string memory) {
        _requireOwned(tokenId);
        return _agentURIs[tokenId];
    }

    /// @notice ERC-721: lets `to` transfer and manage `tokenId` (owner or operator).
    /// @param to The approved account (zero clears).
    /// @param tokenId The agent.
    function approve(address to, uint256 tokenId) external {
        address owner = _requireOwned(tokenId);
        if (msg.sender != owner && !_operatorApprovals[owner][msg.sender]) {
            revert ERC721InvalidApprover(msg.sender);
        }
        _tokenApprovals[tokenId] = to;
        emit Approval(owner, to, tokenId);
    }

    /// @notice ERC-721: who is approved for `tokenId` (reverts for an unknown agent).
    /// @param tokenId The agent.
    /// @return The approved account (zero if none).
    function getApproved(uint256 tokenId) external view returns (address) {
        _requireOwned(tokenId);
        return _tokenApprovals[tokenId];
    }

    /// @notice ERC-721: lets (or stops letting) `operator` manage all the caller's agents.
    /// @param operator The operator (not zero).
    /// @param approved Whether it may.
    function setApprovalForAll(address operator, bool approved) external {
        if (operator == address(0)) revert ERC721InvalidOperator(address(0));
        _operatorApprovals[msg.sender][operator] = approved;
        emit ApprovalForAll(msg.sender, operator, approved);
    }

    /// @notice ERC-721: whether `operator` manages all of `owner`'s agents.
    /// @param owner The owner.
    /// @param operator The operator.
    /// @return Whether it does.
    function isApprovedForAll(address owner, address operator) external view returns (bool) {
        return _operatorApprovals[owner][operator];
    }

    /// @notice ERC-721: moves `tokenId` from `from` to `to`; clears its wallet.
    /// @param from The owner.
    /// @param to The new owner (not zero).
    /// @param tokenId The agent.
    function transferFrom(address from, address to, uint256 tokenId) public {
        if (to == address(0)) revert ERC721InvalidReceiver(address(0));
        address owner = _requireOwned(tokenId);
        if (!_isAuthorized(owner, msg.sender, tokenId)) {
            revert ERC721InsufficientApproval(msg.sender, tokenId);
        }
        if (owner != from) revert ERC721IncorrectOwner(from, tokenId, owner);
        delete _tokenApprovals[tokenId];
        // The verified wallet does not pass to the new owner.
        _setAgentWallet(tokenId, address(0));
        unchecked {
            _balances[from] -= 1;
            _balances[to] += 1;
        }
        _owners[tokenId] = to;
        emit Transfer(from, to, tokenId);
    }

    /// @notice ERC-721: `transferFrom`, then checks a contract receiver accepts the agent.
    /// @param from The owner.
    /// @param to The new owner.
    /// @param tokenId The agent.
    function safeTransferFrom(address from, address to, uint256 tokenId) external {
        safeTransferFrom(from, to, tokenId, "");
    }

    /// @notice ERC-721: `transferFrom`, then checks a contract receiver accepts the agent.
    /// @param from The owner.
    /// @param to The new owner.
    /// @param tokenId The agent.
    /// @param data Passed to the receiver's hook.
    function safeTransferFrom(address from, address to, uint256 tokenId, bytes memory data) public {
        transferFrom(from, to, tokenId);
        _checkOnERC721Received(msg.sender, from, to, tokenId, data);
    }

    // ------------------------------------------------------------------ internals

    function _register(string memory agentURI, bool withURI) private returns (uint256 agentId) {
        agentId = _nextAgentId++;
        unchecked {
            _balances[msg.sender] += 1;
        }
        _owners[agentId] = msg.sender;
        _agentWallets[agentId] = msg.sender;
        emit Transfer(address(0), msg.sender, agentId);
        if (withURI) _setAgentURI(agentId, agentURI);
        emit Registered(agentId, agentURI, msg.sender);
        emit MetadataSet(agentId, AGENT_WALLET_KEY, AGENT_WALLET_KEY, abi.encodePacked(msg.sender));
    }

    function _setAgentURI(uint256 agentId, string memory agentURI) private {
        _agentURIs[agentId] = agentURI;
        emit MetadataUpdate(agentId);
    }

    function _setMetadata(uint256 agentId, string calldata key, bytes calldata value) private {
        if (keccak256(bytes(key)) == AGENT_WALLET_KEY_HASH) revert ReservedMetadataKey(key);
        _metadata[agentId][key] = value;
        emit MetadataSet(agentId, key, key, value);
    }

    function _setAgentWallet(uint256 agentId, address wallet) private {
        _agentWallets[agentId] = wallet;
        bytes memory value = wallet == address(0) ? bytes("") : abi.encodePacked(wallet);
        emit MetadataSet(agentId, AGENT_WALLET_KEY, AGENT_WALLET_KEY, value);
    }

    function _requireOwned(uint256 agentId) private view returns (address owner) {
        owner = _owners[agentId];
        if (owner == address(0)) revert ERC721NonexistentToken(agentId);
    }

    /// @dev The agent's owner, after checking the caller may manage the agent.
    function _requireAuthorized(uint256 agentId) private view returns (address owner) {
        owner = _requireOwned(agentId);
        if (!_isAuthorized(owner, msg.sender, agentId)) revert NotAuthorized(msg.sender, agentId);
    }

    function _isAuthorized(address owner, address spender, uint256 agentId)
        private
        view
        returns (bool)
    {
        return spender == owner || _operatorApprovals[owner][spender]
            || _tokenApprovals[agentId] == spender;
    }

    /// @dev An EOA's low-s EIP-712 signature, else the wallet's ERC-1271 approval.
    function _isValidSignature(address wallet, bytes32 digest, bytes calldata signature)
        private
        view
        returns (bool)
    {
        if (signature.length == 65) {
            bytes32 r = bytes32(signature[0:32]);
            bytes32 s = bytes32(signature[32:64]);
            uint8 v = uint8(signature[64]);
            if (uint256(s) <= HALF_CURVE_ORDER && ecrecover(digest, v, r, s) == wallet) {
                return true;
            }
        }
        if (wallet.code.length == 0) return false;
        (bool ok, bytes memory answer) =
            wallet.staticcall(abi.encodeWithSelector(ERC1271_MAGIC_VALUE, digest, signature));
        // casting to 'bytes32' is safe because the answer is exactly 32 bytes by then
        // forge-lint: disable-next-line(unsafe-typecast)
        return ok && answer.length == 32 && bytes32(answer) == bytes32(ERC1271_MAGIC_VALUE);
    }

    /// @dev A contract receiver must answer the ERC-721 hook with its selector; a revert
    ///      or any other answer refuses the token (the whole call reverts).
    function _checkOnERC721Received(
        address operator,
        address from,
        address to,
        uint256 tokenId,
        bytes memory data
    ) private {
        if (to.code.length == 0) return;
        (bool ok, bytes memory answer) =
            to.call(abi.encodeWithSelector(ERC721_RECEIVED, operator, from, tokenId, data));
        // casting to 'bytes32' is safe because the answer is exactly 32 bytes by then
        // forge-lint: disable-next-line(unsafe-typecast)
        if (!ok || answer.length != 32 || bytes32(answer) != bytes32(ERC721_RECEIVED)) {
            revert ERC721InvalidReceiver(to);
        }
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(
            abi.encode(
                EIP712_DOMAIN_TYPEHASH,
                keccak256(bytes(EIP712_NAME)),
                keccak256(bytes(EIP712_VERSION)),
                block.chainid,
                address(this)
            )
        );
    }
}
