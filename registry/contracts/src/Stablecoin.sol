// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Stablecoin
/// @notice A USDC-compatible ERC-20 with 6 decimals, EIP-2612 `permit` and EIP-3009
///         transfer authorizations, so that x402-style clients can pay it like USDC.
/// @dev The EIP-712 domain, the typehashes, the signature rules and the function
///      signatures follow Circle's FiatTokenV2_2: domain
///      `EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)`
///      with a configurable name and version "2"; both `(v, r, s)` and 65-byte `bytes`
///      signature overloads. Signatures must come from an EOA (no ERC-1271), have a low s
///      (s <= secp256k1n / 2) and v in {27, 28}.
///
///      Supply: the constructor mints `initialSupply` to `initialHolder`. After that only
///      `minter` may mint, and only when `devFaucet` was set at construction (dev chains);
///      with `devFaucet == false` the supply can only shrink (through `burn`).
///      An allowance of `type(uint256).max` is treated as infinite and never decreased.
contract Stablecoin {
    // ------------------------------------------------------------------ constants

    /// @notice EIP-712 domain typehash, as USDC.
    bytes32 public constant EIP712_DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );

    /// @notice EIP-2612 permit typehash.
    bytes32 public constant PERMIT_TYPEHASH = keccak256(
        "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
    );

    /// @notice EIP-3009 typehash of `transferWithAuthorization`.
    bytes32 public constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );

    /// @notice EIP-3009 typehash of `receiveWithAuthorization`.
    bytes32 public constant RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );

    /// @notice EIP-3009 typehash of `cancelAuthorization`.
    bytes32 public constant CANCEL_AUTHORIZATION_TYPEHASH =
        keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");

    /// @dev secp256k1n / 2: signatures with a larger s are malleable copies and rejected.
    uint256 private constant HALF_CURVE_ORDER =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @notice ERC-20 decimals: amounts are in millionths of a unit, as USDC.
    uint8 public constant decimals = 6;

    /// @notice EIP-712 domain version, as USDC.
    string public constant version = "2";

    // ------------------------------------------------------------------ state

    /// @notice ERC-20 name, also the EIP-712 domain name (e.g. "USD Coin").
    string public name;

    /// @notice ERC-20 symbol (e.g. "USDC").
    string public symbol;

    /// @notice ERC-20 total supply.
    uint256 public totalSupply;

    /// @notice ERC-20 balances.
    mapping(address account => uint256) public balanceOf;

    /// @notice ERC-20 allowances.
    mapping(address owner => mapping(address spender => uint256)) public allowance;

    /// @notice EIP-2612 permit nonces: the next nonce `owner` must sign.
    mapping(address owner => uint256) public nonces;

    /// @dev EIP-3009 nonces that were used or canceled.
    mapping(address authorizer => mapping(bytes32 nonce => bool)) private _authorizationStates;

    /// @notice The only account that may mint after construction (dev chains only).
    address public immutable minter;

    /// @notice Whether `minter` may mint after construction. Fixed at deployment: true only on
    ///         dev chains, where it serves as a faucet.
    bool public immutable devFaucet;

    bytes32 private immutable _hashedName;
    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;

    // ------------------------------------------------------------------ events

    /// @notice ERC-20 transfer; `from == 0` for a mint, `to == 0` for a burn.
    event Transfer(address indexed from, address indexed to, uint256 value);

    /// @notice ERC-20 approval, also emitted by `permit` and when `transferFrom` spends.
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// @notice EIP-3009: an authorization was executed.
    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);

    /// @notice EIP-3009: an authorization was canceled before use.
    event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce);

    // ------------------------------------------------------------------ errors

    /// @notice `from` holds `balance`, less than the `needed` amount.
    error InsufficientBalance(address from, uint256 balance, uint256 needed);

    /// @notice `spender` may spend `allowance` of `owner`'s tokens, less than `needed`.
    error InsufficientAllowance(address owner, address spender, uint256 allowance, uint256 needed);

    /// @notice Tokens cannot be sent to or minted for this address (the zero address).
    error InvalidReceiver(address receiver);

    /// @notice An allowance cannot be given to this address (the zero address).
    error InvalidSpender(address spender);

    /// @notice The permit's deadline has passed.
    error PermitExpired(uint256 deadline, uint256 timestamp);

    /// @notice The authorization is not valid before `validAfter` (exclusive).
    error AuthorizationNotYetValid(uint256 validAfter, uint256 timestamp);

    /// @notice The authorization was valid only before `validBefore` (exclusive).
    error AuthorizationExpired(uint256 validBefore, uint256 timestamp);

    /// @notice The authorization nonce was already used or canceled.
    error AuthorizationAlreadyUsed(address authorizer, bytes32 nonce);

    /// @notice `receiveWithAuthorization` must be called by the payee.
    error CallerMustBePayee(address caller, address payee);

    /// @notice A `bytes` signature must be exactly 65 bytes (r, s, v).
    error InvalidSignatureLength(uint256 length);

    /// @notice The signature's s is in the upper half of the curve order (malleable).
    error InvalidSignatureS(bytes32 s);

    /// @notice The signature's v is neither 27 nor 28.
    error InvalidSignatureV(uint8 v);

    /// @notice The signature does not recover to any address.
    error InvalidSignature();

    /// @notice The signature recovers to `recovered`, not the `expected` signer.
    error InvalidSigner(address recovered, address expected);

    /// @notice Minting after construction is disabled (not a dev chain).
    error MintingDisabled();

    /// @notice Only the minter may mint.
    error NotMinter(address caller);

    // ------------------------------------------------------------------ constructor

    /// @param name_ ERC-20 name and EIP-712 domain name (e.g. "USD Coin").
    /// @param symbol_ ERC-20 symbol (e.g. "USDC").
    /// @param minter_ The account allowed to mint when `devFaucet_` is true.
    /// @param devFaucet_ Whether `minter_` may mint after construction (dev chains only).
    /// @param initialHolder Receives `initialSupply`.
    /// @param initialSupply Base units minted at construction (may be 0).
    constructor(
        string memory name_,
        string memory symbol_,
        address minter_,
        bool devFaucet_,
        address initialHolder,
        uint256 initialSupply
    ) {
        name = name_;
        symbol = symbol_;
        minter = minter_;
        devFaucet = devFaucet_;
        _hashedName = keccak256(bytes(name_));
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
        if (initialSupply != 0) _mint(initialHolder, initialSupply);
    }

    // ------------------------------------------------------------------ ERC-20

    /// @notice Moves `value` base units from the caller to `to`.
    /// @param to The recipient (not the zero address).
    /// @param value Amount in base units.
    /// @return Always true; failures revert.
    function transfer(address to, uint256 value) external returns (bool) {
        _transfer(msg.sender, to, value);
        return true;
    }

    /// @notice Moves `value` base units from `from` to `to` using the caller's allowance.
    /// @param from The owner of the tokens.
    /// @param to The recipient (not the zero address).
    /// @param value Amount in base units.
    /// @return Always true; failures revert.
    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        _spendAllowance(from, msg.sender, value);
        _transfer(from, to, value);
        return true;
    }

    /// @notice Sets the caller's allowance for `spender` to `value`.
    /// @param spender The account allowed to spend (not the zero address).
    /// @param value The new allowance; `type(uint256).max` is infinite.
    /// @return Always true; failures revert.
    function approve(address spender, uint256 value) external returns (bool) {
        _approve(msg.sender, spender, value);
        return true;
    }

    /// @notice Destroys `value` base units of the caller's tokens.
    /// @param value Amount in base units.
    function burn(uint256 value) external {
        uint256 balance = balanceOf[msg.sender];
        if (balance < value) revert InsufficientBalance(msg.sender, balance, value);
        unchecked {
            balanceOf[msg.sender] = balance - value;
            totalSupply -= value;
        }
        emit Transfer(msg.sender, address(0), value);
    }

    /// @notice Mints `value` base units to `to`. Dev chains only: reverts unless the token
    ///         was deployed with `devFaucet` and the caller is `minter`.
    /// @param to The recipient (not the zero address).
    /// @param value Amount in base units.
    function mint(address to, uint256 value) external {
        if (!devFaucet) revert MintingDisabled();
        if (msg.sender != minter) revert NotMinter(msg.sender);
        _mint(to, value);
    }

    // ------------------------------------------------------------------ EIP-712

    /// @notice The EIP-712 domain separator; recomputed if the chain id changed (fork).
    /// @return The separator for the current chain.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    /// @notice EIP-5267 description of the EIP-712 domain.
    /// @return fields 0x0f: name, version, chainId and verifyingContract are set.
    /// @return name_ The domain name.
    /// @return version_ The domain version, "2".
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
        return (hex"0f", name, version, block.chainid, address(this), bytes32(0), extensions);
    }

    // ------------------------------------------------------------------ EIP-2612

    /// @notice Sets `owner`'s allowance for `spender` to `value` with `owner`'s signature.
    /// @param owner The token owner who signed.
    /// @param spender The account allowed to spend.
    /// @param value The new allowance.
    /// @param deadline Last timestamp (inclusive) at which the permit may be used.
    /// @param v Signature recovery id (27 or 28).
    /// @param r Signature r.
    /// @param s Signature s (low half).
    function permit(
        address owner,
        address spender,
        uint256 value,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        _permit(owner, spender, value, deadline, v, r, s);
    }

    /// @notice `permit` with a 65-byte signature (r ‖ s ‖ v), as USDC v2.2.
    /// @param owner The token owner who signed.
    /// @param spender The account allowed to spend.
    /// @param value The new allowance.
    /// @param deadline Last timestamp (inclusive) at which the permit may be used.
    /// @param signature 65 bytes: r, s, v.
    function permit(
        address owner,
        address spender,
        uint256 value,
        uint256 deadline,
        bytes calldata signature
    ) external {
        (uint8 v, bytes32 r, bytes32 s) = _split(signature);
        _permit(owner, spender, value, deadline, v, r, s);
    }

    // ------------------------------------------------------------------ EIP-3009

    /// @notice Whether `authorizer` has used or canceled the authorization `nonce`.
    /// @param authorizer The signer of the authorization.
    /// @param nonce The authorization's unique nonce.
    /// @return True if used or canceled.
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool) {
        return _authorizationStates[authorizer][nonce];
    }

    /// @notice Executes a transfer signed by `from`; anyone may submit it.
    /// @param from The payer, who signed.
    /// @param to The payee.
    /// @param value Amount in base units.
    /// @param validAfter The transfer is valid only after this time (exclusive).
    /// @param validBefore The transfer is valid only before this time (exclusive).
    /// @param nonce Unique 32-byte nonce chosen by the payer.
    /// @param v Signature recovery id (27 or 28).
    /// @param r Signature r.
    /// @param s Signature s (low half).
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        _transferWithAuthorization(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
            from,
            to,
            value,
            validAfter,
            validBefore,
            nonce,
            v,
            r,
            s
        );
    }

    /// @notice `transferWithAuthorization` with a 65-byte signature (r ‖ s ‖ v).
    /// @param from The payer, who signed.
    /// @param to The payee.
    /// @param value Amount in base units.
    /// @param validAfter The transfer is valid only after this time (exclusive).
    /// @param validBefore The transfer is valid only before this time (exclusive).
    /// @param nonce Unique 32-byte nonce chosen by the payer.
    /// @param signature 65 bytes: r, s, v.
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external {
        (uint8 v, bytes32 r, bytes32 s) = _split(signature);
        _transferWithAuthorization(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
            from,
            to,
            value,
            validAfter,
            validBefore,
            nonce,
            v,
            r,
            s
        );
    }

    /// @notice Executes a transfer signed by `from`; only the payee `to` may submit it, which
    ///         stops a front-runner from moving the funds without the payee's contract logic.
    /// @param from The payer, who signed.
    /// @param to The payee, who must be the caller.
    /// @param value Amount in base units.
    /// @param validAfter The transfer is valid only after this time (exclusive).
    /// @param validBefore The transfer is valid only before this time (exclusive).
    /// @param nonce Unique 32-byte nonce chosen by the payer.
    /// @param v Signature recovery id (27 or 28).
    /// @param r Signature r.
    /// @param s Signature s (low half).
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        if (msg.sender != to) revert CallerMustBePayee(msg.sender, to);
        _transferWithAuthorization(
            RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
            from,
            to,
            value,
            validAfter,
            validBefore,
            nonce,
            v,
            r,
            s
        );
    }

    /// @notice `receiveWithAuthorization` with a 65-byte signature (r ‖ s ‖ v).
    /// @param from The payer, who signed.
    /// @param to The payee, who must be the caller.
    /// @param value Amount in base units.
    /// @param validAfter The transfer is valid only after this time (exclusive).
    /// @param validBefore The transfer is valid only before this time (exclusive).
    /// @param nonce Unique 32-byte nonce chosen by the payer.
    /// @param signature 65 bytes: r, s, v.
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external {
        if (msg.sender != to) revert CallerMustBePayee(msg.sender, to);
        (uint8 v, bytes32 r, bytes32 s) = _split(signature);
        _transferWithAuthorization(
            RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
            from,
            to,
            value,
            validAfter,
            validBefore,
            nonce,
            v,
            r,
            s
        );
    }

    /// @notice Cancels an unused authorization; anyone may submit the authorizer's signature.
    /// @param authorizer The signer of the authorization to cancel.
    /// @param nonce The authorization's nonce.
    /// @param v Signature recovery id (27 or 28).
    /// @param r Signature r.
    /// @param s Signature s (low half).
    function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s)
        external
    {
        _cancelAuthorization(authorizer, nonce, v, r, s);
    }

    /// @notice `cancelAuthorization` with a 65-byte signature (r ‖ s ‖ v).
    /// @param authorizer The signer of the authorization to cancel.
    /// @param nonce The authorization's nonce.
    /// @param signature 65 bytes: r, s, v.
    function cancelAuthorization(address authorizer, bytes32 nonce, bytes calldata signature)
        external
    {
        (uint8 v, bytes32 r, bytes32 s) = _split(signature);
        _cancelAuthorization(authorizer, nonce, v, r, s);
    }

    // ------------------------------------------------------------------ internals

    function _transfer(address from, address to, uint256 value) private {
        if (to == address(0)) revert InvalidReceiver(to);
        uint256 balance = balanceOf[from];
        if (balance < value) revert InsufficientBalance(from, balance, value);
        unchecked {
            balanceOf[from] = balance - value;
            // Cannot overflow: the sum of all balances is totalSupply.
            balanceOf[to] += value;
        }
        emit Transfer(from, to, value);
    }

    function _mint(address to, uint256 value) private {
        if (to == address(0)) revert InvalidReceiver(to);
        totalSupply += value;
        unchecked {
            balanceOf[to] += value;
        }
        emit Transfer(address(0), to, value);
    }

    function _approve(address owner, address spender, uint256 value) private {
        if (spender == address(0)) revert InvalidSpender(spender);
        allowance[owner][spender] = value;
        emit Approval(owner, spender, value);
    }

    function _spendAllowance(address owner, address spender, uint256 value) private {
        uint256 current = allowance[owner][spender];
        if (current == type(uint256).max) return;
        if (current < value) revert InsufficientAllowance(owner, spender, current, value);
        unchecked {
            allowance[owner][spender] = current - value;
        }
        emit Approval(owner, spender, current - value);
    }

    function _permit(
        address owner,
        address spender,
        uint256 value,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) private {
        if (deadline < block.timestamp) revert PermitExpired(deadline, block.timestamp);
        bytes32 structHash = keccak256(
            abi.encode(PERMIT_TYPEHASH, owner, spender, value, nonces[owner]++, deadline)
        );
        _checkSigner(_hashTypedData(structHash), v, r, s, owner);
        _approve(owner, spender, value);
    }

    function _transferWithAuthorization(
        bytes32 typehash,
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) private {
        if (block.timestamp <= validAfter) {
            revert AuthorizationNotYetValid(validAfter, block.timestamp);
        }
        if (block.timestamp >= validBefore) {
            revert AuthorizationExpired(validBefore, block.timestamp);
        }
        _useNonce(from, nonce);
        bytes32 structHash =
            keccak256(abi.encode(typehash, from, to, value, validAfter, validBefore, nonce));
        _checkSigner(_hashTypedData(structHash), v, r, s, from);
        emit AuthorizationUsed(from, nonce);
        _transfer(from, to, value);
    }

    function _cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s)
        private
    {
        _useNonce(authorizer, nonce);
        bytes32 structHash = keccak256(abi.encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce));
        _checkSigner(_hashTypedData(structHash), v, r, s, authorizer);
        emit AuthorizationCanceled(authorizer, nonce);
    }

    function _useNonce(address authorizer, bytes32 nonce) private {
        if (_authorizationStates[authorizer][nonce]) {
            revert AuthorizationAlreadyUsed(authorizer, nonce);
        }
        _authorizationStates[authorizer][nonce] = true;
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(
            abi.encode(
                EIP712_DOMAIN_TYPEHASH,
                _hashedName,
                keccak256(bytes(version)),
                block.chainid,
                address(this)
            )
        );
    }

    function _hashTypedData(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", DOMAIN_SEPARATOR(), structHash));
    }

    function _checkSigner(bytes32 digest, uint8 v, bytes32 r, bytes32 s, address expected)
        private
        pure
    {
        if (uint256(s) > HALF_CURVE_ORDER) revert InvalidSignatureS(s);
        if (v != 27 && v != 28) revert InvalidSignatureV(v);
        address recovered = ecrecover(digest, v, r, s);
        if (recovered == address(0)) revert InvalidSignature();
        if (recovered != expected) revert InvalidSigner(recovered, expected);
    }

    function _split(bytes calldata signature) private pure returns (uint8 v, bytes32 r, bytes32 s) {
        if (signature.length != 65) revert InvalidSignatureLength(signature.length);
        r = bytes32(signature[0:32]);
        s = bytes32(signature[32:64]);
        v = uint8(signature[64]);
    }
}
