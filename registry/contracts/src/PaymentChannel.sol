// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Stablecoin} from "./Stablecoin.sol";

/// @title PaymentChannel
/// @notice Unidirectional stablecoin payment channels: a payer locks a deposit for one payee,
///         pays it off-chain with signed cumulative vouchers, and the payee settles the latest
///         voucher on chain whenever it likes, in one transaction for many small deals.
/// @dev Channels are keyed by
///
///          channelId = keccak256(abi.encode(payer, payee, salt))
///
///      (two addresses and a bytes32, each ABI-encoded as a 32-byte word; see `channelIdOf`).
///      The salt is chosen by the payer, so a client derives the id before anything is signed
///      and a retry opens the same channel instead of a second one. Each id can be opened once,
///      ever.
///
///      Vouchers are EIP-712 typed data signed by the payer:
///
///          Voucher(bytes32 channelId,uint256 cumulativeAmount)
///
///      in the domain `EIP712Domain(string name,string version,uint256 chainId,address
///      verifyingContract)` with name "Agora PaymentChannel" and version "1". The amount is
///      cumulative (everything paid in the channel so far), so only the latest voucher matters
///      and a lost or replayed older one is worthless. Signatures must come from an EOA
///      (65 bytes r ‖ s ‖ v, no ERC-1271), with a low s (s <= secp256k1n / 2) and v in
///      {27, 28}, as the Stablecoin's.
///
///      State machine of a channel (every transition emits an event):
///
///      None ──open / openWithAuthorization──▶ Open
///      Open ──topUp / topUpWithAuthorization (payer, t <= expiresAt)──▶ Open  [deposit grows]
///      Open ──settle (payee, t <= expiresAt)──▶ Open            [payee paid the increment]
///      Open ──close (payee, t <= expiresAt)──▶ Closed   [increment to payee, rest to payer]
///      Open ──expire (anyone, t > expiresAt)──▶ Expired [unsettled rest to payer]
///
///      The payee's guaranteed window: `expiresAt` is fixed when the channel opens and can
///      never be brought forward, and until then (inclusive) only the payee can move money out
///      of the channel (`settle`, `close`). The payer's money comes back only after it
///      (`expire`, t > expiresAt). The windows do not overlap and Closed and Expired are final,
///      so neither side can take both. A payee should therefore settle its latest voucher
///      before `expiresAt`, and accept vouchers only from channels whose `expiresAt` leaves it
///      enough time for that (it is in `ChannelOpened` and `getChannel`).
///
///      A voucher above the deposit reverts (`VoucherExceedsDeposit`) rather than paying out
///      the deposit: the payee can wait for a top-up and settle the same voucher then.
///
///      Funding. `open`/`topUp` pull with `transferFrom` (the payer approved this contract and
///      sends the transaction). The gasless paths `openWithAuthorization` and
///      `topUpWithAuthorization` take the payer's EIP-3009 `ReceiveWithAuthorization` for the
///      token and may be submitted by anyone (the payee, typically). EIP-3009 rather than
///      EIP-2612 `permit` because:
///      - the authorization's 32-byte nonce binds the channel's terms: the contract computes
///        it as `openAuthorizationNonce(channelId, expiresAt)` (channelId binds payer, payee
///        and salt) or `topUpAuthorizationNonce(channelId, newDeposit)`, so the payer's single
///        signature authorizes exactly this channel, and a relayer who changes the payee, the
///        salt, the expiry or the amount gets a signature that does not verify. A permit only
///        names a spender and an amount: whoever submits it could open a channel to itself;
///        binding the payee would take `msg.sender == payer`, which costs the payer gas;
///      - `receiveWithAuthorization` can only be executed by its `to` (this contract), so a
///        front-runner cannot turn it into a bare transfer that leaves the deposit unbooked;
///        a copied submission opens the same channel and the original then reverts
///        `ChannelExists`, which a client reads as done;
///      - EIP-3009 nonces are chosen (here derived), not sequential, so the authorization is
///        idempotent and independent of the payer's other permits and authorizations.
///      Agora wallets never sign raw `approve` transactions, so agents use these paths.
///
///      Amounts are held as uint128 (deposit and paid share one storage slot); a deposit
///      above 2^128 - 1 base units reverts `AmountTooLarge`.
contract PaymentChannel {
    /// @notice Where a channel stands.
    enum State {
        None,
        Open,
        Closed,
        Expired
    }

    /// @notice One channel.
    /// @param payer Who deposited and signs vouchers; gets the unsettled rest back.
    /// @param expiresAt Last timestamp (inclusive) at which the payee may settle or close.
    /// @param state Where the channel stands.
    /// @param payee Who settles vouchers and is paid.
    /// @param deposit Base units deposited in all (open and top-ups).
    /// @param paid Base units paid to the payee so far (the last settled cumulative amount).
    struct Channel {
        address payer;
        uint64 expiresAt;
        State state;
        address payee;
        uint128 deposit;
        uint128 paid;
    }

    // ------------------------------------------------------------------ constants

    /// @notice EIP-712 domain typehash.
    bytes32 public constant EIP712_DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );

    /// @notice EIP-712 typehash of a voucher.
    bytes32 public constant VOUCHER_TYPEHASH =
        keccak256("Voucher(bytes32 channelId,uint256 cumulativeAmount)");

    /// @notice Domain tag of the EIP-3009 nonce that funds a new channel (see
    ///         `openAuthorizationNonce`).
    bytes32 public constant OPEN_AUTHORIZATION_TAG =
        keccak256("Agora PaymentChannel open(bytes32 channelId,uint64 expiresAt)");

    /// @notice Domain tag of the EIP-3009 nonce that tops a channel up (see
    ///         `topUpAuthorizationNonce`).
    bytes32 public constant TOP_UP_AUTHORIZATION_TAG =
        keccak256("Agora PaymentChannel topUp(bytes32 channelId,uint256 deposit)");

    /// @notice EIP-712 domain name.
    string public constant name = "Agora PaymentChannel";

    /// @notice EIP-712 domain version.
    string public constant version = "1";

    /// @dev secp256k1n / 2: signatures with a larger s are malleable copies and rejected.
    uint256 private constant HALF_CURVE_ORDER =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    // ------------------------------------------------------------------ state

    /// @notice The token channels are funded and paid in.
    Stablecoin public immutable token;

    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;

    mapping(bytes32 channelId => Channel) private _channels;

    // ------------------------------------------------------------------ events

    /// @notice A channel was opened with `amount` deposited.
    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        bytes32 salt,
        uint256 amount,
        uint64 expiresAt
    );

    /// @notice The payer added `amount`; the channel now holds `deposit` in all.
    event ChannelToppedUp(bytes32 indexed channelId, uint256 amount, uint256 deposit);

    /// @notice The payee settled a voucher for `cumulativeAmount` and was paid `amount` (the
    ///         increment over the previous settlement).
    event ChannelSettled(bytes32 indexed channelId, uint256 cumulativeAmount, uint256 amount);

    /// @notice The payee closed the channel: it was paid `paid` in all and the payer got
    ///         `refunded` back.
    event ChannelClosed(bytes32 indexed channelId, uint256 paid, uint256 refunded);

    /// @notice The channel expired: the payee was paid `paid` in all and the payer got
    ///         `refunded` back.
    event ChannelExpired(bytes32 indexed channelId, uint256 paid, uint256 refunded);

    // ------------------------------------------------------------------ errors

    /// @notice A channel with this id was opened before.
    error ChannelExists(bytes32 channelId);

    /// @notice No channel has this id.
    error UnknownChannel(bytes32 channelId);

    /// @notice The channel is `current` (Closed or Expired), where this call is not allowed.
    error ChannelNotOpen(bytes32 channelId, State current);

    /// @notice The payee must be a non-zero address other than the payer.
    error InvalidPayee(address payee);

    /// @notice The amount must be positive.
    error ZeroAmount();

    /// @notice The deposit would exceed 2^128 - 1 base units.
    error AmountTooLarge(uint256 deposit);

    /// @notice The expiry must lie in the future.
    error ExpiryInPast(uint64 expiresAt, uint256 timestamp);

    /// @notice The channel expired at `expiresAt`: the payee can no longer settle or close and
    ///         the payer can no longer top up.
    error ChannelPastExpiry(bytes32 channelId, uint64 expiresAt, uint256 timestamp);

    /// @notice The channel does not expire before `expiresAt` (inclusive).
    error ChannelNotExpired(bytes32 channelId, uint64 expiresAt, uint256 timestamp);

    /// @notice Only the channel's payer may call this.
    error NotPayer(address caller);

    /// @notice Only the channel's payee may call this.
    error NotPayee(address caller);

    /// @notice The voucher's cumulative amount is not above what was already paid.
    error StaleVoucher(bytes32 channelId, uint256 cumulativeAmount, uint256 paid);

    /// @notice The voucher's cumulative amount is above the deposit.
    error VoucherExceedsDeposit(bytes32 channelId, uint256 cumulativeAmount, uint256 deposit);

    /// @notice A signature must be exactly 65 bytes (r, s, v).
    error InvalidSignatureLength(uint256 length);

    /// @notice The signature's s is in the upper half of the curve order (malleable).
    error InvalidSignatureS(bytes32 s);

    /// @notice The signature's v is neither 27 nor 28.
    error InvalidSignatureV(uint8 v);

    /// @notice The signature does not recover to any address.
    error InvalidSignature();

    /// @notice The signature recovers to `recovered`, not the `expected` payer.
    error InvalidSigner(address recovered, address expected);

    // ------------------------------------------------------------------ constructor

    /// @param token_ The stablecoin channels are funded and paid in.
    constructor(Stablecoin token_) {
        token = token_;
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
    }

    // ------------------------------------------------------------------ payer

    /// @notice Opens a channel from the caller to `payee`, pulling `amount` with
    ///         `transferFrom` (approve this contract first).
    /// @param salt Chosen by the payer; unique among its channels to this payee.
    /// @param payee Who may settle vouchers (not zero, not the caller).
    /// @param amount Deposit in base units (positive).
    /// @param expiresAt Last timestamp (inclusive) for the payee to settle; in the future.
    /// @return channelId `keccak256(abi.encode(msg.sender, payee, salt))`.
    function open(bytes32 salt, address payee, uint256 amount, uint64 expiresAt)
        external
        returns (bytes32 channelId)
    {
        channelId = _open(msg.sender, salt, payee, amount, expiresAt);
        token.transferFrom(msg.sender, address(this), amount);
    }

    /// @notice Opens a channel from `payer` to `payee` with the payer's EIP-3009
    ///         `ReceiveWithAuthorization` of `amount` to this contract, whose nonce must be
    ///         `openAuthorizationNonce(channelIdOf(payer, payee, salt), expiresAt)`. Anyone may
    ///         submit it; the payer needs no gas.
    /// @param payer Who signed the authorization and owns the deposit.
    /// @param salt Chosen by the payer; unique among its channels to this payee.
    /// @param payee Who may settle vouchers (not zero, not the payer).
    /// @param amount Deposit in base units (positive), the authorization's value.
    /// @param expiresAt Last timestamp (inclusive) for the payee to settle; in the future.
    /// @param validAfter The authorization's validAfter (exclusive).
    /// @param validBefore The authorization's validBefore (exclusive).
    /// @param signature The payer's 65-byte authorization signature (r ‖ s ‖ v).
    /// @return channelId `keccak256(abi.encode(payer, payee, salt))`.
    function openWithAuthorization(
        address payer,
        bytes32 salt,
        address payee,
        uint256 amount,
        uint64 expiresAt,
        uint256 validAfter,
        uint256 validBefore,
        bytes calldata signature
    ) external returns (bytes32 channelId) {
        channelId = _open(payer, salt, payee, amount, expiresAt);
        token.receiveWithAuthorization(
            payer,
            address(this),
            amount,
            validAfter,
            validBefore,
            openAuthorizationNonce(channelId, expiresAt),
            signature
        );
    }

    /// @notice The payer adds `amount` to an open, unexpired channel with `transferFrom`.
    /// @param channelId The channel.
    /// @param amount Base units to add (positive).
    function topUp(bytes32 channelId, uint256 amount) external {
        Channel storage channel = _openChannel(channelId);
        if (msg.sender != channel.payer) revert NotPayer(msg.sender);
        _topUp(channelId, channel, amount);
        token.transferFrom(msg.sender, address(this), amount);
    }

    /// @notice Adds `amount` to an open, unexpired channel with the payer's EIP-3009
    ///         `ReceiveWithAuthorization` to this contract, whose nonce must be
    ///         `topUpAuthorizationNonce(channelId, deposit + amount)`: it is valid only on top
    ///         of the deposit it was signed for. Anyone may submit it.
    /// @param channelId The channel.
    /// @param amount Base units to add (positive), the authorization's value.
    /// @param validAfter The authorization's validAfter (exclusive).
    /// @param validBefore The authorization's validBefore (exclusive).
    /// @param signature The payer's 65-byte authorization signature (r ‖ s ‖ v).
    function topUpWithAuthorization(
        bytes32 channelId,
        uint256 amount,
        uint256 validAfter,
        uint256 validBefore,
        bytes calldata signature
    ) external {
        Channel storage channel = _openChannel(channelId);
        uint256 deposit = _topUp(channelId, channel, amount);
        token.receiveWithAuthorization(
            channel.payer,
            address(this),
            amount,
            validAfter,
            validBefore,
            topUpAuthorizationNonce(channelId, deposit),
            signature
        );
    }

    /// @notice Anyone returns the unsettled rest of an expired channel (t > expiresAt) to
    ///         the payer.
    /// @param channelId The channel.
    function expire(bytes32 channelId) external {
        Channel storage channel = _existing(channelId);
        _requireOpen(channelId, channel);
        uint64 expiresAt = channel.expiresAt;
        if (block.timestamp <= expiresAt) {
            revert ChannelNotExpired(channelId, expiresAt, block.timestamp);
        }
        channel.state = State.Expired;
        uint256 paid = channel.paid;
        uint256 refunded = channel.deposit - paid;
        emit ChannelExpired(channelId, paid, refunded);
        if (refunded != 0) token.transfer(channel.payer, refunded);
    }

    // ------------------------------------------------------------------ payee

    /// @notice The payee cashes a voucher: it is paid `cumulativeAmount` minus what it was
    ///         paid before. Callable repeatedly with growing vouchers until `expiresAt`.
    /// @param channelId The channel.
    /// @param cumulativeAmount The voucher's amount: all paid in the channel so far; above the
    ///        last settlement and at most the deposit.
    /// @param signature The payer's 65-byte voucher signature (r ‖ s ‖ v).
    function settle(bytes32 channelId, uint256 cumulativeAmount, bytes calldata signature)
        external
    {
        Channel storage channel = _payeeCall(channelId);
        uint256 paid = channel.paid;
        if (cumulativeAmount <= paid) revert StaleVoucher(channelId, cumulativeAmount, paid);
        uint256 amount = _settle(channelId, channel, paid, cumulativeAmount, signature);
        token.transfer(channel.payee, amount);
    }

    /// @notice The payee closes the channel: settles the voucher if it is above the last
    ///         settlement and returns the rest of the deposit to the payer. A voucher equal to
    ///         the last settlement (0 if none) closes without paying more and needs no valid
    ///         signature.
    /// @param channelId The channel.
    /// @param cumulativeAmount The final cumulative amount: at least the last settlement and
    ///        at most the deposit.
    /// @param signature The payer's voucher signature (ignored if nothing more is paid).
    function close(bytes32 channelId, uint256 cumulativeAmount, bytes calldata signature) external {
        Channel storage channel = _payeeCall(channelId);
        uint256 paid = channel.paid;
        if (cumulativeAmount < paid) revert StaleVoucher(channelId, cumulativeAmount, paid);
        uint256 amount;
        if (cumulativeAmount != paid) {
            amount = _settle(channelId, channel, paid, cumulativeAmount, signature);
        }
        channel.state = State.Closed;
        uint256 refunded = channel.deposit - cumulativeAmount;
        emit ChannelClosed(channelId, cumulativeAmount, refunded);
        if (amount != 0) token.transfer(channel.payee, amount);
        if (refunded != 0) token.transfer(channel.payer, refunded);
    }

    // ------------------------------------------------------------------ EIP-712

    /// @notice The EIP-712 domain separator; recomputed if the chain id changed (fork).
    /// @return The separator for the current chain.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    /// @notice EIP-5267 description of the EIP-712 domain.
    /// @return fields 0x0f: name, version, chainId and verifyingContract are set.
    /// @return name_ The domain name, "Agora PaymentChannel".
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
        return (hex"0f", name, version, block.chainid, address(this), bytes32(0), extensions);
    }

    /// @notice The digest a payer signs for a voucher.
    /// @param channelId The channel.
    /// @param cumulativeAmount All paid in the channel so far.
    /// @return The EIP-712 digest.
    function voucherDigest(bytes32 channelId, uint256 cumulativeAmount)
        public
        view
        returns (bytes32)
    {
        bytes32 structHash = keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount));
        return keccak256(abi.encodePacked(hex"1901", DOMAIN_SEPARATOR(), structHash));
    }

    // ------------------------------------------------------------------ views

    /// @notice The channel id of a payer's channel to a payee:
    ///         `keccak256(abi.encode(payer, payee, salt))`.
    /// @param payer Who deposits.
    /// @param payee Who is paid.
    /// @param salt The payer's salt.
    /// @return The channel id.
    function channelIdOf(address payer, address payee, bytes32 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(payer, payee, salt));
    }

    /// @notice The EIP-3009 nonce of the authorization that opens `channelId` with expiry
    ///         `expiresAt`: `keccak256(abi.encode(OPEN_AUTHORIZATION_TAG, channelId,
    ///         expiresAt))`.
    /// @param channelId The channel.
    /// @param expiresAt The channel's expiry.
    /// @return The nonce.
    function openAuthorizationNonce(bytes32 channelId, uint64 expiresAt)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(OPEN_AUTHORIZATION_TAG, channelId, expiresAt));
    }

    /// @notice The EIP-3009 nonce of the authorization that tops `channelId` up to a total
    ///         deposit of `deposit`: `keccak256(abi.encode(TOP_UP_AUTHORIZATION_TAG, channelId,
    ///         deposit))`.
    /// @param channelId The channel.
    /// @param deposit The channel's total deposit after the top-up.
    /// @return The nonce.
    function topUpAuthorizationNonce(bytes32 channelId, uint256 deposit)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(TOP_UP_AUTHORIZATION_TAG, channelId, deposit));
    }

    /// @notice A channel's record (all zero if unknown).
    /// @param channelId The channel.
    /// @return The record.
    function getChannel(bytes32 channelId) external view returns (Channel memory) {
        return _channels[channelId];
    }

    /// @notice Where a channel stands.
    /// @param channelId The channel.
    /// @return The state (None if unknown).
    function stateOf(bytes32 channelId) external view returns (State) {
        return _channels[channelId].state;
    }

    // ------------------------------------------------------------------ internals

    function _open(address payer, bytes32 salt, address payee, uint256 amount, uint64 expiresAt)
        private
        returns (bytes32 channelId)
    {
        channelId = channelIdOf(payer, payee, salt);
        Channel storage channel = _channels[channelId];
        if (channel.state != State.None) revert ChannelExists(channelId);
        if (payee == address(0) || payee == payer) revert InvalidPayee(payee);
        if (amount == 0) revert ZeroAmount();
        if (amount > type(uint128).max) revert AmountTooLarge(amount);
        if (expiresAt <= block.timestamp) revert ExpiryInPast(expiresAt, block.timestamp);
        channel.payer = payer;
        channel.expiresAt = expiresAt;
        channel.state = State.Open;
        channel.payee = payee;
        channel.deposit = uint128(amount);
        emit ChannelOpened(channelId, payer, payee, salt, amount, expiresAt);
    }

    /// @dev Checks and books a top-up of an open channel; returns the new deposit.
    function _topUp(bytes32 channelId, Channel storage channel, uint256 amount)
        private
        returns (uint256 deposit)
    {
        _requireUnexpired(channelId, channel);
        if (amount == 0) revert ZeroAmount();
        deposit = channel.deposit + amount;
        if (deposit > type(uint128).max) revert AmountTooLarge(deposit);
        channel.deposit = uint128(deposit);
        emit ChannelToppedUp(channelId, amount, deposit);
    }

    /// @dev Checks and books a voucher above `paid`; returns the increment to pay the payee.
    function _settle(
        bytes32 channelId,
        Channel storage channel,
        uint256 paid,
        uint256 cumulativeAmount,
        bytes calldata signature
    ) private returns (uint256 amount) {
        uint256 deposit = channel.deposit;
        if (cumulativeAmount > deposit) {
            revert VoucherExceedsDeposit(channelId, cumulativeAmount, deposit);
        }
        _checkSigner(voucherDigest(channelId, cumulativeAmount), signature, channel.payer);
        // cumulativeAmount <= deposit < 2^128.
        channel.paid = uint128(cumulativeAmount);
        amount = cumulativeAmount - paid;
        emit ChannelSettled(channelId, cumulativeAmount, amount);
    }

    /// @dev An open channel the caller is the payee of, before its expiry.
    function _payeeCall(bytes32 channelId) private view returns (Channel storage channel) {
        channel = _openChannel(channelId);
        if (msg.sender != channel.payee) revert NotPayee(msg.sender);
        _requireUnexpired(channelId, channel);
    }

    function _openChannel(bytes32 channelId) private view returns (Channel storage channel) {
        channel = _existing(channelId);
        _requireOpen(channelId, channel);
    }

    function _existing(bytes32 channelId) private view returns (Channel storage channel) {
        channel = _channels[channelId];
        if (channel.state == State.None) revert UnknownChannel(channelId);
    }

    function _requireOpen(bytes32 channelId, Channel storage channel) private view {
        State current = channel.state;
        if (current != State.Open) revert ChannelNotOpen(channelId, current);
    }

    function _requireUnexpired(bytes32 channelId, Channel storage channel) private view {
        uint64 expiresAt = channel.expiresAt;
        if (block.timestamp > expiresAt) {
            revert ChannelPastExpiry(channelId, expiresAt, block.timestamp);
        }
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(
            abi.encode(
                EIP712_DOMAIN_TYPEHASH,
                keccak256(bytes(name)),
                keccak256(bytes(version)),
                block.chainid,
                address(this)
            )
        );
    }

    function _checkSigner(bytes32 digest, bytes calldata signature, address expected) private pure {
        if (signature.length != 65) revert InvalidSignatureLength(signature.length);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > HALF_CURVE_ORDER) revert InvalidSignatureS(s);
        if (v != 27 && v != 28) revert InvalidSignatureV(v);
        address recovered = ecrecover(digest, v, r, s);
        if (recovered == address(0)) revert InvalidSignature();
        if (recovered != expected) revert InvalidSigner(recovered, expected);
    }
}
