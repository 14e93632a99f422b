// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IdentityRegistry} from "./IdentityRegistry.sol";

/// @title ReputationRegistry
/// @notice The ERC-8004 ("Trustless Agents") Reputation Registry: clients post feedback on
///         agents of an `IdentityRegistry` as a signed fixed-point value with optional tags,
///         revoke their own feedback, and anyone appends responses.
/// @dev Implements the interface of ERC-8004 as published (ethereum/ERCs `ERCS/erc-8004.md`
///      and the reference `ReputationRegistryUpgradeable`): function signatures, events,
///      return types and the aggregation of `getSummary` are theirs. Differences are ours: a
///      plain contract whose identity registry is fixed at construction, and custom errors
///      instead of revert strings.
///
///      - Feedback indexes count from 1 per (agent, client); `getLastIndex` is the latest.
///      - The agent's owner and its ERC-721 operators may not rate it (`SelfFeedback`); an
///        unknown agent reverts with the identity registry's `ERC721NonexistentToken`.
///      - `valueDecimals` is at most 18 and |value| at most 1e38.
///      - `endpoint`, `feedbackURI` and `feedbackHash` are only emitted, not stored.
///      - Anyone may call `giveFeedback`, so a summary is only as good as its client list:
///        `getSummary` requires one. Agora's own feedback comes from one reviewer contract,
///        `SettledFeedback`, which rates only after a settled payment; pass its address as
///        the client list to read payment-backed reputation.
contract ReputationRegistry {
    /// @notice The largest |value|.
    int128 public constant MAX_ABS_VALUE = 1e38;

    /// @notice The most decimals a value may have.
    uint8 public constant MAX_DECIMALS = 18;

    /// @notice One stored feedback entry.
    /// @param value The signed fixed-point value.
    /// @param valueDecimals Its decimals.
    /// @param isRevoked Whether its client revoked it.
    /// @param tag1 First tag (may be empty).
    /// @param tag2 Second tag (may be empty).
    struct Feedback {
        int128 value;
        uint8 valueDecimals;
        bool isRevoked;
        string tag1;
        string tag2;
    }

    /// @dev Which entries a read counts: tag hashes (zero: any tag), revoked ones or not.
    struct Filter {
        bytes32 tag1Hash;
        bytes32 tag2Hash;
        bool includeRevoked;
    }

    /// @dev The columns `readAllFeedback` returns.
    struct Listing {
        address[] clients;
        uint64[] feedbackIndexes;
        int128[] values;
        uint8[] valueDecimals;
        string[] tag1s;
        string[] tag2s;
        bool[] revokedStatuses;
    }

    /// @notice The identity registry whose agents are rated.
    IdentityRegistry public immutable identityRegistry;

    mapping(uint256 agentId => mapping(address client => mapping(uint64 index => Feedback))) private
        _feedback;
    mapping(uint256 agentId => mapping(address client => uint64)) private _lastIndex;
    mapping(uint256 agentId => address[]) private _clients;
    mapping(uint256 agentId => mapping(address client => bool)) private _isClient;
    mapping(
        uint256 agentId
            => mapping(
            address client => mapping(uint64 index => mapping(address responder => uint64))
        )
    ) private _responseCount;
    mapping(uint256 agentId => mapping(address client => mapping(uint64 index => address[])))
        private _responders;

    /// @notice ERC-8004: `clientAddress` gave feedback number `feedbackIndex` on `agentId`.
    event NewFeedback(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        int128 value,
        uint8 valueDecimals,
        string indexed indexedTag1,
        string tag1,
        string tag2,
        string endpoint,
        string feedbackURI,
        bytes32 feedbackHash
    );

    /// @notice ERC-8004: `clientAddress` revoked its feedback number `feedbackIndex`.
    event FeedbackRevoked(
        uint256 indexed agentId, address indexed clientAddress, uint64 indexed feedbackIndex
    );

    /// @notice ERC-8004: `responder` responded to a feedback entry.
    event ResponseAppended(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        address indexed responder,
        string responseURI,
        bytes32 responseHash
    );

    /// @notice The identity registry cannot be the zero address.
    error InvalidIdentityRegistry();

    /// @notice `valueDecimals` is above `MAX_DECIMALS`.
    error InvalidValueDecimals(uint8 valueDecimals);

    /// @notice |value| is above `MAX_ABS_VALUE`.
    error ValueOutOfRange(int128 value);

    /// @notice The agent's owner and operators may not rate it.
    error SelfFeedback(address client, uint256 agentId);

    /// @notice No feedback entry has this index (indexes run from 1 to `lastIndex`).
    error InvalidFeedbackIndex(uint64 feedbackIndex, uint64 lastIndex);

    /// @notice The feedback entry was revoked already.
    error FeedbackAlreadyRevoked(uint256 agentId, address client, uint64 feedbackIndex);

    /// @notice A response needs a URI.
    error EmptyResponseURI();

    /// @notice `getSummary` needs a non-empty client list (unfiltered summaries are Sybil bait).
    error ClientAddressesRequired();

    /// @param identityRegistry_ The identity registry whose agents are rated.
    constructor(IdentityRegistry identityRegistry_) {
        if (address(identityRegistry_) == address(0)) revert InvalidIdentityRegistry();
        identityRegistry = identityRegistry_;
    }

    /// @notice ERC-8004: the identity registry whose agents are rated.
    /// @return The registry's address.
    function getIdentityRegistry() external view returns (address) {
        return address(identityRegistry);
    }

    /// @notice ERC-8004: records the caller's feedback on an agent.
    /// @param agentId The agent (registered; the caller neither owns nor operates it).
    /// @param value Signed fixed-point value, |value| at most 1e38.
    /// @param valueDecimals Its decimals, 0 to 18.
    /// @param tag1 First tag (may be empty).
    /// @param tag2 Second tag (may be empty).
    /// @param endpoint The endpoint rated (may be empty; emitted only).
    /// @param feedbackURI Where a feedback file is (may be empty; emitted only).
    /// @param feedbackHash keccak256 of that file (may be zero; emitted only).
    function giveFeedback(
        uint256 agentId,
        int128 value,
        uint8 valueDecimals,
        string calldata tag1,
        string calldata tag2,
        string memory endpoint,
        string memory feedbackURI,
        bytes32 feedbackHash
    ) external {
        if (valueDecimals > MAX_DECIMALS) {
            revert InvalidValueDecimals(valueDecimals);
        }
        if (value > MAX_ABS_VALUE || value < -MAX_ABS_VALUE) revert ValueOutOfRange(value);
        if (identityRegistry.isAuthorizedOrOwner(msg.sender, agentId)) {
            revert SelfFeedback(msg.sender, agentId);
        }
        emit NewFeedback(
            agentId,
            msg.sender,
            _store(agentId, value, valueDecimals, tag1, tag2),
            value,
            valueDecimals,
            tag1,
            tag1,
            tag2,
            endpoint,
            feedbackURI,
            feedbackHash
        );
    }

    /// @notice ERC-8004: the caller revokes its own feedback entry.
    /// @param agentId The agent.
    /// @param feedbackIndex The entry's index (1 to the caller's last index).
    function revokeFeedback(uint256 agentId, uint64 feedbackIndex) external {
        Feedback storage entry = _existingFeedback(agentId, msg.sender, feedbackIndex);
        if (entry.isRevoked) revert FeedbackAlreadyRevoked(agentId, msg.sender, feedbackIndex);
        entry.isRevoked = true;
        emit FeedbackRevoked(agentId, msg.sender, feedbackIndex);
    }

    /// @notice ERC-8004: anyone appends a response (a refund shown by the agent, a spam tag by
    ///         an aggregator) to a feedback entry.
    /// @param agentId The agent.
    /// @param clientAddress Who gave the feedback.
    /// @param feedbackIndex The entry's index.
    /// @param responseURI Where the response is (not empty).
    /// @param responseHash keccak256 of the response (may be zero).
    function appendResponse(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        string calldata responseURI,
        bytes32 responseHash
    ) external {
        _existingFeedback(agentId, clientAddress, feedbackIndex);
        if (bytes(responseURI).length == 0) revert EmptyResponseURI();
        mapping(address responder => uint64) storage counts =
            _responseCount[agentId][clientAddress][feedbackIndex];
        if (counts[msg.sender] == 0) {
            _responders[agentId][clientAddress][feedbackIndex].push(msg.sender);
        }
        counts[msg.sender] += 1;
        emit ResponseAppended(
            agentId, clientAddress, feedbackIndex, msg.sender, responseURI, responseHash
        );
    }

    /// @notice ERC-8004: how many feedback entries `clientAddress` gave `agentId`.
    /// @param agentId The agent.
    /// @param clientAddress The client.
    /// @return The last index (0 if none).
    function getLastIndex(uint256 agentId, address clientAddress) external view returns (uint64) {
        return _lastIndex[agentId][clientAddress];
    }

    /// @notice ERC-8004: every client that rated `agentId`, in order of their first feedback.
    /// @param agentId The agent.
    /// @return The clients.
    function getClients(uint256 agentId) external view returns (address[] memory) {
        return _clients[agentId];
    }

    /// @notice ERC-8004: one feedback entry.
    /// @param agentId The agent.
    /// @param clientAddress The client.
    /// @param feedbackIndex The entry's index (1 to the client's last index).
    /// @return value The value.
    /// @return valueDecimals Its decimals.
    /// @return tag1 First tag.
    /// @return tag2 Second tag.
    /// @return isRevoked Whether it was revoked.
    function readFeedback(uint256 agentId, address clientAddress, uint64 feedbackIndex)
        external
        view
        returns (
            int128 value,
            uint8 valueDecimals,
            string memory tag1,
            string memory tag2,
            bool isRevoked
        )
    {
        Feedback storage f = _existingFeedback(agentId, clientAddress, feedbackIndex);
        return (f.value, f.valueDecimals, f.tag1, f.tag2, f.isRevoked);
    }

    /// @notice ERC-8004: the mean of the unrevoked feedback of `clientAddresses` on `agentId`
    ///         matching the tags, as the reference computes it: each value scaled to 18
    ///         decimals, averaged (rounded toward zero), then given in the decimals most
    ///         entries used (the fewest on a tie), saturating at the bounds of int128.
    /// @param agentId The agent.
    /// @param clientAddresses Whose feedback counts (not empty).
    /// @param tag1 Only entries with this first tag (empty: any).
    /// @param tag2 Only entries with this second tag (empty: any).
    /// @return count How many entries counted.
    /// @return summaryValue Their mean (0 when none).
    /// @return summaryValueDecimals Its decimals (0 when none).
    function getSummary(
        uint256 agentId,
        address[] calldata clientAddresses,
        string calldata tag1,
        string calldata tag2
    ) external view returns (uint64 count, int128 summaryValue, uint8 summaryValueDecimals) {
        if (clientAddresses.length == 0) revert ClientAddressesRequired();
        int256 sum;
        (sum, count, summaryValueDecimals) =
            _summarize(agentId, clientAddresses, _filter(tag1, tag2, false));
        if (count == 0) return (0, 0, 0);
        int256 mean = sum / int256(uint256(count));
        int256 scaled = mean / int256(10 ** uint256(MAX_DECIMALS - summaryValueDecimals));
        // Mixed decimals can take the mean out of int128 (e.g. 1e38 with 0 decimals among
        // entries with 18): saturate rather than wrap around.
        if (scaled > type(int128).max) return (count, type(int128).max, summaryValueDecimals);
        if (scaled < type(int128).min) return (count, type(int128).min, summaryValueDecimals);
        // casting to 'int128' is safe because `scaled` was checked against its bounds above
        // forge-lint: disable-next-line(unsafe-typecast)
        summaryValue = int128(scaled);
    }

    /// @notice ERC-8004: every feedback entry on `agentId` matching the filters, client by
    ///         client and oldest first.
    /// @param agentId The agent.
    /// @param clientAddresses Whose feedback (empty: every client, see `getClients`).
    /// @param tag1 Only entries with this first tag (empty: any).
    /// @param tag2 Only entries with this second tag (empty: any).
    /// @param includeRevoked Whether revoked entries are listed too.
    /// @return clients Each entry's client.
    /// @return feedbackIndexes Each entry's index.
    /// @return values Each entry's value.
    /// @return valueDecimals Each entry's decimals.
    /// @return tag1s Each entry's first tag.
    /// @return tag2s Each entry's second tag.
    /// @return revokedStatuses Whether each entry was revoked.
    function readAllFeedback(
        uint256 agentId,
        address[] memory clientAddresses,
        string memory tag1,
        string memory tag2,
        bool includeRevoked
    )
        external
        view
        returns (
            address[] memory clients,
            uint64[] memory feedbackIndexes,
            int128[] memory values,
            uint8[] memory valueDecimals,
            string[] memory tag1s,
            string[] memory tag2s,
            bool[] memory revokedStatuses
        )
    {
        Listing memory listing = _readAll(
            agentId, clientAddresses, _filter(tag1, tag2, includeRevoked)
        );
        return (
            listing.clients,
            listing.feedbackIndexes,
            listing.values,
            listing.valueDecimals,
            listing.tag1s,
            listing.tag2s,
            listing.revokedStatuses
        );
    }

    /// @notice ERC-8004: how many responses were appended: to one entry (`clientAddress` and
    ///         `feedbackIndex` given), to all of one client's entries (`feedbackIndex` 0), or
    ///         to every entry on the agent (`clientAddress` zero).
    /// @param agentId The agent.
    /// @param clientAddress The client, or zero for all.
    /// @param feedbackIndex The entry, or 0 for all of the client's.
    /// @param responders Only responses by these (empty: by anyone).
    /// @return count The number of responses.
    function getResponseCount(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        address[] calldata responders
    ) external view returns (uint64 count) {
        if (clientAddress == address(0)) {
            address[] storage clients = _clients[agentId];
            for (uint256 i = 0; i < clients.length; ++i) {
                count += _responsesOfClient(agentId, clients[i], responders);
            }
        } else if (feedbackIndex == 0) {
            count = _responsesOfClient(agentId, clientAddress, responders);
        } else {
            count = _responses(agentId, clientAddress, feedbackIndex, responders);
        }
    }

    // ------------------------------------------------------------------ internals

    /// @dev Stores the caller's next feedback entry on `agentId`; returns its index.
    function _store(
        uint256 agentId,
        int128 value,
        uint8 valueDecimals,
        string calldata tag1,
        string calldata tag2
    ) private returns (uint64 index) {
        index = ++_lastIndex[agentId][msg.sender];
        Feedback storage entry = _feedback[agentId][msg.sender][index];
        entry.value = value;
        entry.valueDecimals = valueDecimals;
        entry.tag1 = tag1;
        entry.tag2 = tag2;
        if (!_isClient[agentId][msg.sender]) {
            _isClient[agentId][msg.sender] = true;
            _clients[agentId].push(msg.sender);
        }
    }

    function _existingFeedback(uint256 agentId, address client, uint64 feedbackIndex)
        private
        view
        returns (Feedback storage)
    {
        uint64 last = _lastIndex[agentId][client];
        if (feedbackIndex == 0 || feedbackIndex > last) {
            revert InvalidFeedbackIndex(feedbackIndex, last);
        }
        return _feedback[agentId][client][feedbackIndex];
    }

    /// @dev The filter of a read: tag hashes (zero: any tag) and whether revoked entries count.
    function _filter(string memory tag1, string memory tag2, bool includeRevoked)
        private
        pure
        returns (Filter memory filter)
    {
        if (bytes(tag1).length != 0) filter.tag1Hash = keccak256(bytes(tag1));
        if (bytes(tag2).length != 0) filter.tag2Hash = keccak256(bytes(tag2));
        filter.includeRevoked = includeRevoked;
    }

    /// @dev Whether `f` passes `filter`.
    function _matches(Feedback storage f, Filter memory filter) private view returns (bool) {
        if (f.isRevoked && !filter.includeRevoked) return false;
        if (filter.tag1Hash != 0 && filter.tag1Hash != keccak256(bytes(f.tag1))) return false;
        return filter.tag2Hash == 0 || filter.tag2Hash == keccak256(bytes(f.tag2));
    }

    /// @dev Sum (scaled to 18 decimals) and count of the clients' entries passing `filter`,
    ///      and the decimals most of them used (the fewest on a tie; 0 when none).
    function _summarize(uint256 agentId, address[] calldata clients, Filter memory filter)
        private
        view
        returns (int256 sum, uint64 count, uint8 modeDecimals)
    {
        uint64[19] memory decimalCounts;
        for (uint256 i = 0; i < clients.length; ++i) {
            (int256 clientSum, uint64 clientCount) =
                _sumOfClient(agentId, clients[i], filter, decimalCounts);
            sum += clientSum;
            count += clientCount;
        }
        uint64 most;
        for (uint8 d = 0; d <= MAX_DECIMALS; ++d) {
            if (decimalCounts[d] > most) {
                most = decimalCounts[d];
                modeDecimals = d;
            }
        }
    }

    /// @dev Sum (scaled to 18 decimals) and count of a client's entries passing `filter`;
    ///      adds each entry's decimals to `decimalCounts`.
    function _sumOfClient(
        uint256 agentId,
        address client,
        Filter memory filter,
        uint64[19] memory decimalCounts
    ) private view returns (int256 sum, uint64 count) {
        uint64 last = _lastIndex[agentId][client];
        for (uint64 j = 1; j <= last; ++j) {
            Feedback storage f = _feedback[agentId][client][j];
            if (!_matches(f, filter)) continue;
            sum += int256(f.value) * int256(10 ** uint256(MAX_DECIMALS - f.valueDecimals));
            decimalCounts[f.valueDecimals] += 1;
            count += 1;
        }
    }

    function _countMatching(uint256 agentId, address[] memory clientList, Filter memory filter)
        private
        view
        returns (uint256 total)
    {
        for (uint256 i = 0; i < clientList.length; ++i) {
            address client = clientList[i];
            uint64 last = _lastIndex[agentId][client];
            for (uint64 j = 1; j <= last; ++j) {
                if (_matches(_feedback[agentId][client][j], filter)) ++total;
            }
        }
    }

    /// @dev The entries of `clientAddresses` (empty: every client) passing `filter`.
    function _readAll(uint256 agentId, address[] memory clientAddresses, Filter memory filter)
        private
        view
        returns (Listing memory listing)
    {
        address[] memory clientList = clientAddresses;
        if (clientList.length == 0) clientList = _clients[agentId];
        listing = _newListing(_countMatching(agentId, clientList, filter));
        uint256 n;
        for (uint256 i = 0; i < clientList.length; ++i) {
            n = _listClient(agentId, clientList[i], filter, listing, n);
        }
    }

    function _newListing(uint256 total) private pure returns (Listing memory listing) {
        listing.clients = new address[](total);
        listing.feedbackIndexes = new uint64[](total);
        listing.values = new int128[](total);
        listing.valueDecimals = new uint8[](total);
        listing.tag1s = new string[](total);
        listing.tag2s = new string[](total);
        listing.revokedStatuses = new bool[](total);
    }

    /// @dev Writes a client's entries passing `filter` into `listing` from position `n`;
    ///      returns the next free position.
    function _listClient(
        uint256 agentId,
        address client,
        Filter memory filter,
        Listing memory listing,
        uint256 n
    ) private view returns (uint256) {
        uint64 last = _lastIndex[agentId][client];
        for (uint64 j = 1; j <= last; ++j) {
            Feedback storage f = _feedback[agentId][client][j];
            if (!_matches(f, filter)) continue;
            listing.clients[n] = client;
            listing.feedbackIndexes[n] = j;
            listing.values[n] = f.value;
            listing.valueDecimals[n] = f.valueDecimals;
            listing.tag1s[n] = f.tag1;
            listing.tag2s[n] = f.tag2;
            listing.revokedStatuses[n] = f.isRevoked;
            ++n;
        }
        return n;
    }

    function _responsesOfClient(uint256 agentId, address client, address[] calldata responders)
        private
        view
        returns (uint64 count)
    {
        uint64 last = _lastIndex[agentId][client];
        for (uint64 j = 1; j <= last; ++j) {
            count += _responses(agentId, client, j, responders);
        }
    }

    function _responses(
        uint256 agentId,
        address client,
        uint64 feedbackIndex,
        address[] calldata responders
    ) private view returns (uint64 count) {
        mapping(address responder => uint64) storage counts =
            _responseCount[agentId][client][feedbackIndex];
        if (responders.length == 0) {
            address[] storage all = _responders[agentId][client][feedbackIndex];
            for (uint256 k = 0; k < all.length; ++k) {
                count += counts[all[k]];
            }
        } else {
            for (uint256 k = 0; k < responders.length; ++k) {
                count += counts[responders[k]];
            }
        }
    }
}
