// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Stablecoin} from "./Stablecoin.sol";

/// @title AgentRegistry
/// @notice Identity, service catalogue, stake and governance of Agora agents, inspired by
///         ERC-8004 identity registries. An agent is identified by its wallet address (the
///         caller of `register`) and publishes an endpoint, an agent card URI (an ERC-8004
///         registration file), a model fingerprint (SHA-256 of its GGUF file, zero if it runs
///         no model) and services (skill tag, price, unit). Buyers look agents up by skill.
/// @dev Design choices:
///      - Skill tags are `bytes32`: up to 32 bytes of UTF-8, zero-padded on the right (ethers
///        `encodeBytes32String`), e.g. "weather.forecast". Prices are in base units of the
///        stablecoin (6 decimals); `unit` says what one price buys (e.g. "request").
///      - Stake is held in the `Stablecoin` (pulled with `transferFrom`, so approve or permit
///        first), not native ETH: it is the unit that agents price and pay in, and slashing
///        it needs no price oracle. Withdrawals are two-step: `requestStakeWithdrawal`, then
///        `withdrawStake` in the `withdrawalWindow` seconds that start `unbondingPeriod` after
///        the request, so that a misbehaving agent cannot pull its stake ahead of a slash. A
///        request that is not taken in its window lapses (the amount counts as bonded again
///        and a new request restarts the unbonding), so a matured request cannot keep stake
///        liquid indefinitely. `bondedStake` = stake minus a live (not lapsed) pending
///        withdrawal; `isActive`, lookups and off-chain ranking use it, and it must reach
///        `minStake` (0 on dev chains) for an agent to be listed.
///      - Stake freezes (`withdrawStake` reverts, `stakeFrozen` is true) while the agent is
///        suspended, while its current model fingerprint is suspended, and while the suspended
///        fingerprint it last moved away from (`frozenByModel`) stays suspended: changing the
///        fingerprint with `updateAgent` gets a killed agent listed again under a clean model
///        but does not lift the freeze. An agent may leave only one suspended fingerprint at a
///        time: while `frozenByModel` is suspended, `updateAgent` cannot move away from a
///        second suspended one. A fingerprint suspended only after the agent left it does not
///        freeze the stake (the governor can suspend the agent itself).
///      - Governance lives here (one place holds the state that lookups filter on): a
///        `governor` suspends and reinstates agents, suspends and reinstates model
///        fingerprints (the kill switch) and slashes stake to the `treasury`, or burns it when
///        the treasury is the zero address. The governor may name adjudicators: contracts
///        (such as `InferenceOracle`) that may also `slash` and `suspendModel`, and only
///        that, when their own rules prove misbehaviour; reinstating stays with the
///        governor. Feedback lives in the `Reputation` contract.
///      - Lookups (`agentsBySkill`) skip inactive agents: suspended ones, those whose model
///        fingerprint is suspended and those whose bonded stake is below `minStake`. Every
///        change emits an event carrying the full new value, so an indexer can rebuild the
///        whole state from logs alone (bonded stake also depends on the time, through the
///        lapse of withdrawal requests at `readyAt + withdrawalWindow`).
contract AgentRegistry {
    // ------------------------------------------------------------------ types

    /// @notice One service an agent sells.
    /// @param skill Skill tag (UTF-8, zero-padded on the right); never zero.
    /// @param price Price in stablecoin base units per `unit`.
    /// @param unit What one price buys (e.g. "request", "1k tokens").
    struct Service {
        bytes32 skill;
        uint256 price;
        string unit;
    }

    /// @notice An agent's record.
    /// @param registered Whether the agent has registered.
    /// @param suspended Whether the governor suspended the agent.
    /// @param withdrawalReadyAt When the requested withdrawal may be taken (0: none pending);
    ///        the request lapses at `withdrawalReadyAt + withdrawalWindow`.
    /// @param modelFingerprint SHA-256 of the agent's model file (zero: no model).
    /// @param stake Stablecoin base units staked (including any pending withdrawal).
    /// @param pendingWithdrawal Base units requested for withdrawal (not bonded until the
    ///        request is taken, cancelled or lapses).
    /// @param endpoint Where the agent listens (e.g. "wss://host:port").
    /// @param cardURI URI of the agent card (ERC-8004 registration file).
    struct Agent {
        bool registered;
        bool suspended;
        uint64 withdrawalReadyAt;
        bytes32 modelFingerprint;
        uint256 stake;
        uint256 pendingWithdrawal;
        string endpoint;
        string cardURI;
    }

    // ------------------------------------------------------------------ state

    /// @notice Most services one agent may list (bounds the gas of replacing them).
    uint256 public constant MAX_SERVICES = 32;

    /// @notice The token stakes are held in.
    Stablecoin public immutable token;

    /// @notice Seconds between a stake withdrawal request and the withdrawal.
    uint64 public immutable unbondingPeriod;

    /// @notice Seconds, from `readyAt` on, in which a requested withdrawal may be taken; the
    ///         request lapses at `readyAt + withdrawalWindow`.
    uint64 public immutable withdrawalWindow;

    /// @notice Least bonded stake (stablecoin base units) for an agent to be active and
    ///         listed; 0 (dev chains) lists agents without stake.
    uint256 public immutable minStake;

    /// @notice Who suspends, reinstates and slashes.
    address public governor;

    /// @notice Proposed next governor; becomes governor by calling `acceptGovernance`.
    address public pendingGovernor;

    /// @notice Receives slashed stake; the zero address burns it.
    address public treasury;

    /// @notice Contracts the governor allowed to `slash` and `suspendModel` (see
    ///         `setAdjudicator`).
    mapping(address adjudicator => bool) public isAdjudicator;

    /// @notice Whether a model fingerprint is suspended (kill switch).
    mapping(bytes32 fingerprint => bool) public modelSuspended;

    /// @notice The suspended model fingerprint an agent last moved away from with
    ///         `updateAgent` (zero: none); the agent's stake is frozen while it stays suspended.
    mapping(address agent => bytes32 fingerprint) public frozenByModel;

    mapping(address agent => Agent) private _agents;
    mapping(address agent => Service[]) private _services;
    /// @dev 1-based position of a skill in `_services[agent]`; 0 when not offered.
    mapping(address agent => mapping(bytes32 skill => uint256)) private _servicePos;
    /// @dev Agents that offer a skill, in no particular order.
    mapping(bytes32 skill => address[]) private _providers;
    /// @dev 1-based position of an agent in `_providers[skill]`; 0 when absent.
    mapping(bytes32 skill => mapping(address agent => uint256)) private _providerPos;

    // ------------------------------------------------------------------ events

    /// @notice An agent registered.
    event AgentRegistered(
        address indexed agent, string endpoint, string cardURI, bytes32 indexed modelFingerprint
    );

    /// @notice An agent changed its endpoint, card URI or model fingerprint (all given).
    event AgentUpdated(
        address indexed agent, string endpoint, string cardURI, bytes32 indexed modelFingerprint
    );

    /// @notice An agent's whole service list was replaced by `services`.
    event ServicesReplaced(address indexed agent, Service[] services);

    /// @notice An agent added or repriced one service.
    event ServiceSet(address indexed agent, bytes32 indexed skill, uint256 price, string unit);

    /// @notice An agent stopped offering one service.
    event ServiceRemoved(address indexed agent, bytes32 indexed skill);

    /// @notice Stake was added; `stake` is the new total.
    event StakeAdded(address indexed agent, uint256 amount, uint256 stake);

    /// @notice A withdrawal of `amount` was requested; it may be taken from `readyAt` on.
    event StakeWithdrawalRequested(address indexed agent, uint256 amount, uint64 readyAt);

    /// @notice The pending withdrawal of `amount` was cancelled; it is bonded again.
    event StakeWithdrawalCancelled(address indexed agent, uint256 amount);

    /// @notice Stake was withdrawn; `stake` is the new total.
    event StakeWithdrawn(address indexed agent, uint256 amount, uint256 stake);

    /// @notice The governor (or an adjudicator) slashed `amount` to `recipient` (zero:
    ///         burned); `stake` is the new total and `pendingWithdrawal` the withdrawal still
    ///         requested.
    event StakeSlashed(
        address indexed agent,
        uint256 amount,
        address indexed recipient,
        uint256 stake,
        uint256 pendingWithdrawal,
        string reason
    );

    /// @notice The governor suspended an agent.
    event AgentSuspended(address indexed agent, string reason);

    /// @notice The governor lifted an agent's suspension.
    event AgentReinstated(address indexed agent);

    /// @notice The governor (or an adjudicator) suspended a model fingerprint (kill switch).
    event ModelSuspended(bytes32 indexed modelFingerprint, string reason);

    /// @notice The governor lifted a model fingerprint's suspension.
    event ModelReinstated(bytes32 indexed modelFingerprint);

    /// @notice The agent moved away from the suspended `modelFingerprint`; its stake stays
    ///         frozen while that fingerprint is suspended (`frozenByModel`).
    event StakeFrozenByModel(address indexed agent, bytes32 indexed modelFingerprint);

    /// @notice The governor allowed (`allowed`) or stopped allowing an adjudicator.
    event AdjudicatorSet(address indexed adjudicator, bool allowed);

    /// @notice The governor proposed `pendingGovernor` as its successor.
    event GovernanceTransferStarted(address indexed governor, address indexed pendingGovernor);

    /// @notice The governor changed.
    event GovernorChanged(address indexed previousGovernor, address indexed newGovernor);

    /// @notice The treasury changed (zero: slashed stake is burned).
    event TreasuryChanged(address indexed previousTreasury, address indexed newTreasury);

    // ------------------------------------------------------------------ errors

    /// @notice The caller is already registered.
    error AlreadyRegistered(address agent);

    /// @notice The address is not a registered agent.
    error NotRegistered(address agent);

    /// @notice The endpoint must not be empty.
    error EmptyEndpoint();

    /// @notice A service's skill tag must not be zero.
    error EmptySkill();

    /// @notice A skill appears twice in one service list.
    error DuplicateSkill(bytes32 skill);

    /// @notice The agent does not offer this skill.
    error UnknownService(address agent, bytes32 skill);

    /// @notice More than `MAX_SERVICES` services.
    error TooManyServices(uint256 count, uint256 max);

    /// @notice An amount must be positive.
    error ZeroAmount();

    /// @notice The agent's stake is smaller than the amount asked for.
    error InsufficientStake(address agent, uint256 stake, uint256 needed);

    /// @notice No stake withdrawal was requested.
    error NoWithdrawalRequested(address agent);

    /// @notice The requested withdrawal may be taken from `readyAt` on.
    error WithdrawalNotReady(uint64 readyAt, uint256 timestamp);

    /// @notice The requested withdrawal lapsed at `expiresAt`; request it again.
    error WithdrawalExpired(uint256 expiresAt, uint256 timestamp);

    /// @notice The agent's stake is frozen (agent or model suspended; see `stakeFrozen`).
    error StakeFrozen(address agent);

    /// @notice The agent cannot leave the suspended `modelFingerprint` while the suspended
    ///         fingerprint it left before, `frozenByModel`, still freezes its stake.
    error SuspendedModelLocked(bytes32 modelFingerprint, bytes32 frozenByModel);

    /// @notice A page must scan at least one listing.
    error ZeroLimit();

    /// @notice The withdrawal window must be positive.
    error InvalidWithdrawalWindow();

    /// @notice Only the governor may call this (or, for `slash` and `suspendModel`, an
    ///         adjudicator).
    error NotGovernor(address caller);

    /// @notice Only the pending governor may accept governance.
    error NotPendingGovernor(address caller);

    /// @notice The agent is already suspended.
    error AgentAlreadySuspended(address agent);

    /// @notice The agent is not suspended.
    error AgentNotSuspended(address agent);

    /// @notice The zero fingerprint (no model) cannot be suspended.
    error InvalidModelFingerprint();

    /// @notice The model fingerprint is already suspended.
    error ModelAlreadySuspended(bytes32 modelFingerprint);

    /// @notice The model fingerprint is not suspended.
    error ModelNotSuspended(bytes32 modelFingerprint);

    /// @notice The governor cannot be the zero address.
    error InvalidGovernor();

    // ------------------------------------------------------------------ modifiers

    modifier onlyGovernor() {
        if (msg.sender != governor) revert NotGovernor(msg.sender);
        _;
    }

    modifier onlyGovernorOrAdjudicator() {
        if (msg.sender != governor && !isAdjudicator[msg.sender]) revert NotGovernor(msg.sender);
        _;
    }

    modifier onlyRegistered() {
        if (!_agents[msg.sender].registered) revert NotRegistered(msg.sender);
        _;
    }

    // ------------------------------------------------------------------ constructor

    /// @param token_ The stablecoin stakes are held in.
    /// @param governor_ The first governor (not zero).
    /// @param treasury_ Receives slashed stake; zero burns it.
    /// @param unbondingPeriod_ Seconds between a withdrawal request and the withdrawal.
    /// @param withdrawalWindow_ Seconds (positive) from the end of the unbonding period in
    ///        which the withdrawal may be taken before the request lapses.
    /// @param minStake_ Least bonded stake for an agent to be active and listed (0 allowed).
    constructor(
        Stablecoin token_,
        address governor_,
        address treasury_,
        uint64 unbondingPeriod_,
        uint64 withdrawalWindow_,
        uint256 minStake_
    ) {
        if (governor_ == address(0)) revert InvalidGovernor();
        if (withdrawalWindow_ == 0) revert InvalidWithdrawalWindow();
        token = token_;
        governor = governor_;
        treasury = treasury_;
        unbondingPeriod = unbondingPeriod_;
        withdrawalWindow = withdrawalWindow_;
        minStake = minStake_;
        emit GovernorChanged(address(0), governor_);
        emit TreasuryChanged(address(0), treasury_);
    }

    // ------------------------------------------------------------------ agent actions

    /// @notice Registers the caller as an agent. Pulls `stake` from the caller with
    ///         `transferFrom` (approve this registry first) when it is not zero.
    /// @param endpoint Where the agent listens (not empty).
    /// @param cardURI URI of the agent card (ERC-8004 registration file).
    /// @param modelFingerprint SHA-256 of the model file; zero if the agent runs no model.
    /// @param services The services offered (unique, non-zero skills; at most MAX_SERVICES).
    /// @param stake Stablecoin base units to stake now (may be 0).
    function register(
        string calldata endpoint,
        string calldata cardURI,
        bytes32 modelFingerprint,
        Service[] calldata services,
        uint256 stake
    ) external {
        Agent storage a = _agents[msg.sender];
        if (a.registered) revert AlreadyRegistered(msg.sender);
        if (bytes(endpoint).length == 0) revert EmptyEndpoint();
        a.registered = true;
        a.modelFingerprint = modelFingerprint;
        a.endpoint = endpoint;
        a.cardURI = cardURI;
        emit AgentRegistered(msg.sender, endpoint, cardURI, modelFingerprint);
        _replaceServices(msg.sender, services);
        if (stake != 0) _addStake(a, stake);
    }

    /// @notice Changes the caller's endpoint, card URI and model fingerprint. Moving away from
    ///         a suspended fingerprint records it in `frozenByModel` (the stake stays frozen
    ///         while it is suspended), and reverts if the fingerprint recorded before is
    ///         still suspended.
    /// @param endpoint Where the agent listens (not empty).
    /// @param cardURI URI of the agent card.
    /// @param modelFingerprint SHA-256 of the model file; zero if the agent runs no model.
    function updateAgent(
        string calldata endpoint,
        string calldata cardURI,
        bytes32 modelFingerprint
    ) external onlyRegistered {
        if (bytes(endpoint).length == 0) revert EmptyEndpoint();
        Agent storage a = _agents[msg.sender];
        bytes32 current = a.modelFingerprint;
        if (modelFingerprint != current && modelSuspended[current]) {
            bytes32 frozenBy = frozenByModel[msg.sender];
            if (frozenBy != current && modelSuspended[frozenBy]) {
                revert SuspendedModelLocked(current, frozenBy);
            }
            frozenByModel[msg.sender] = current;
            emit StakeFrozenByModel(msg.sender, current);
        }
        a.endpoint = endpoint;
        a.cardURI = cardURI;
        a.modelFingerprint = modelFingerprint;
        emit AgentUpdated(msg.sender, endpoint, cardURI, modelFingerprint);
    }

    /// @notice Replaces all of the caller's services (an empty list unlists the agent).
    /// @param services The new services (unique, non-zero skills; at most MAX_SERVICES).
    function setServices(Service[] calldata services) external onlyRegistered {
        _replaceServices(msg.sender, services);
    }

    /// @notice Adds a service or changes its price and unit.
    /// @param skill Skill tag (not zero).
    /// @param price Price in stablecoin base units per `unit`.
    /// @param unit What one price buys.
    function setService(bytes32 skill, uint256 price, string calldata unit)
        external
        onlyRegistered
    {
        if (skill == bytes32(0)) revert EmptySkill();
        uint256 pos = _servicePos[msg.sender][skill];
        if (pos == 0) {
            Service[] storage list = _services[msg.sender];
            if (list.length == MAX_SERVICES) {
                revert TooManyServices(MAX_SERVICES + 1, MAX_SERVICES);
            }
            list.push(Service(skill, price, unit));
            _servicePos[msg.sender][skill] = list.length;
            _addProvider(skill, msg.sender);
        } else {
            Service storage svc = _services[msg.sender][pos - 1];
            svc.price = price;
            svc.unit = unit;
        }
        emit ServiceSet(msg.sender, skill, price, unit);
    }

    /// @notice Stops offering one service.
    /// @param skill Skill tag of the service to remove.
    function removeService(bytes32 skill) external onlyRegistered {
        uint256 pos = _servicePos[msg.sender][skill];
        if (pos == 0) revert UnknownService(msg.sender, skill);
        Service[] storage list = _services[msg.sender];
        uint256 last = list.length;
        if (pos != last) {
            Service storage moved = list[last - 1];
            list[pos - 1] = moved;
            _servicePos[msg.sender][moved.skill] = pos;
        }
        list.pop();
        delete _servicePos[msg.sender][skill];
        _removeProvider(skill, msg.sender);
        emit ServiceRemoved(msg.sender, skill);
    }

    /// @notice Adds `amount` to the caller's stake, pulled with `transferFrom`.
    /// @param amount Stablecoin base units (positive).
    function addStake(uint256 amount) external onlyRegistered {
        if (amount == 0) revert ZeroAmount();
        _addStake(_agents[msg.sender], amount);
    }

    /// @notice Asks to withdraw `amount` of stake after `unbondingPeriod`; replaces any earlier
    ///         request and restarts the clock. The amount stops counting as bonded at once,
    ///         stays slashable until withdrawn, and may be taken from `readyAt` until the
    ///         request lapses at `readyAt + withdrawalWindow`.
    /// @param amount Stablecoin base units (positive, at most the stake).
    function requestStakeWithdrawal(uint256 amount) external onlyRegistered {
        Agent storage a = _agents[msg.sender];
        if (amount == 0) revert ZeroAmount();
        if (amount > a.stake) revert InsufficientStake(msg.sender, a.stake, amount);
        uint64 readyAt = uint64(block.timestamp) + unbondingPeriod;
        a.pendingWithdrawal = amount;
        a.withdrawalReadyAt = readyAt;
        emit StakeWithdrawalRequested(msg.sender, amount, readyAt);
    }

    /// @notice Cancels the caller's pending withdrawal (live or lapsed); the amount is bonded
    ///         again.
    function cancelStakeWithdrawal() external onlyRegistered {
        Agent storage a = _agents[msg.sender];
        uint256 amount = a.pendingWithdrawal;
        if (amount == 0) revert NoWithdrawalRequested(msg.sender);
        a.pendingWithdrawal = 0;
        a.withdrawalReadyAt = 0;
        emit StakeWithdrawalCancelled(msg.sender, amount);
    }

    /// @notice Withdraws the requested stake in its window: from `readyAt` (the end of the
    ///         unbonding period) until `readyAt + withdrawalWindow` (exclusive). Reverts while
    ///         the stake is frozen (see `stakeFrozen`).
    function withdrawStake() external onlyRegistered {
        Agent storage a = _agents[msg.sender];
        uint256 amount = a.pendingWithdrawal;
        if (amount == 0) revert NoWithdrawalRequested(msg.sender);
        if (_stakeFrozen(msg.sender, a)) revert StakeFrozen(msg.sender);
        uint64 readyAt = a.withdrawalReadyAt;
        if (block.timestamp < readyAt) revert WithdrawalNotReady(readyAt, block.timestamp);
        uint256 expiresAt = uint256(readyAt) + withdrawalWindow;
        if (block.timestamp >= expiresAt) revert WithdrawalExpired(expiresAt, block.timestamp);
        uint256 remaining = a.stake - amount; // slashing keeps pendingWithdrawal <= stake
        a.stake = remaining;
        a.pendingWithdrawal = 0;
        a.withdrawalReadyAt = 0;
        emit StakeWithdrawn(msg.sender, amount, remaining);
        token.transfer(msg.sender, amount);
    }

    // ------------------------------------------------------------------ governance

    /// @notice Suspends an agent: it disappears from lookups and its stake is frozen.
    /// @param agent The agent to suspend.
    /// @param reason Why, for the record.
    function suspendAgent(address agent, string calldata reason) external onlyGovernor {
        Agent storage a = _agents[agent];
        if (!a.registered) revert NotRegistered(agent);
        if (a.suspended) revert AgentAlreadySuspended(agent);
        a.suspended = true;
        emit AgentSuspended(agent, reason);
    }

    /// @notice Lifts an agent's suspension.
    /// @param agent The suspended agent.
    function reinstateAgent(address agent) external onlyGovernor {
        Agent storage a = _agents[agent];
        if (!a.suspended) revert AgentNotSuspended(agent);
        a.suspended = false;
        emit AgentReinstated(agent);
    }

    /// @notice Kill switch: every agent running this model disappears from lookups and its
    ///         stake is frozen (also after it moves to another model; see `frozenByModel`).
    /// @param modelFingerprint The model's SHA-256 (not zero).
    /// @param reason Why, for the record.
    function suspendModel(bytes32 modelFingerprint, string calldata reason)
        external
        onlyGovernorOrAdjudicator
    {
        if (modelFingerprint == bytes32(0)) revert InvalidModelFingerprint();
        if (modelSuspended[modelFingerprint]) revert ModelAlreadySuspended(modelFingerprint);
        modelSuspended[modelFingerprint] = true;
        emit ModelSuspended(modelFingerprint, reason);
    }

    /// @notice Lifts a model fingerprint's suspension.
    /// @param modelFingerprint The suspended model's SHA-256.
    function reinstateModel(bytes32 modelFingerprint) external onlyGovernor {
        if (!modelSuspended[modelFingerprint]) revert ModelNotSuspended(modelFingerprint);
        modelSuspended[modelFingerprint] = false;
        emit ModelReinstated(modelFingerprint);
    }

    /// @notice Takes `amount` of an agent's stake to the treasury, or burns it when the
    ///         treasury is the zero address. A pending withdrawal shrinks to what is left.
    /// @param agent The agent to slash.
    /// @param amount Stablecoin base units (positive, at most the stake).
    /// @param reason Why, for the record.
    function slash(address agent, uint256 amount, string calldata reason)
        external
        onlyGovernorOrAdjudicator
    {
        Agent storage a = _agents[agent];
        if (!a.registered) revert NotRegistered(agent);
        if (amount == 0) revert ZeroAmount();
        uint256 stake = a.stake;
        if (amount > stake) revert InsufficientStake(agent, stake, amount);
        unchecked {
            stake -= amount;
        }
        a.stake = stake;
        uint256 pending = a.pendingWithdrawal;
        if (pending > stake) {
            pending = stake;
            a.pendingWithdrawal = pending;
            if (pending == 0) a.withdrawalReadyAt = 0;
        }
        address recipient = treasury;
        emit StakeSlashed(agent, amount, recipient, stake, pending, reason);
        if (recipient == address(0)) token.burn(amount);
        else token.transfer(recipient, amount);
    }

    /// @notice Allows `adjudicator` (a contract whose rules prove misbehaviour, such as
    ///         `InferenceOracle`) to `slash` and `suspendModel`, or stops allowing it.
    /// @param adjudicator The contract.
    /// @param allowed Whether it may.
    function setAdjudicator(address adjudicator, bool allowed) external onlyGovernor {
        isAdjudicator[adjudicator] = allowed;
        emit AdjudicatorSet(adjudicator, allowed);
    }

    /// @notice Sets where slashed stake goes; the zero address burns it.
    /// @param newTreasury The new treasury.
    function setTreasury(address newTreasury) external onlyGovernor {
        emit TreasuryChanged(treasury, newTreasury);
        treasury = newTreasury;
    }

    /// @notice Proposes a new governor, who takes over by calling `acceptGovernance`.
    ///         Proposing the zero address cancels a pending proposal.
    /// @param newGovernor The proposed governor.
    function transferGovernance(address newGovernor) external onlyGovernor {
        pendingGovernor = newGovernor;
        emit GovernanceTransferStarted(msg.sender, newGovernor);
    }

    /// @notice The pending governor takes over.
    function acceptGovernance() external {
        if (msg.sender != pendingGovernor || msg.sender == address(0)) {
            revert NotPendingGovernor(msg.sender);
        }
        emit GovernorChanged(governor, msg.sender);
        governor = msg.sender;
        pendingGovernor = address(0);
    }

    // ------------------------------------------------------------------ views

    /// @notice An agent's record (all zero if not registered).
    /// @param agent The agent's wallet address.
    /// @return The record.
    function getAgent(address agent) external view returns (Agent memory) {
        return _agents[agent];
    }

    /// @notice An agent's services.
    /// @param agent The agent's wallet address.
    /// @return The services, in storage order.
    function getServices(address agent) external view returns (Service[] memory) {
        return _services[agent];
    }

    /// @notice One service of an agent.
    /// @param agent The agent's wallet address.
    /// @param skill The skill tag.
    /// @return offered Whether the agent offers the skill.
    /// @return price Price in stablecoin base units per unit (0 if not offered).
    /// @return unit What one price buys ("" if not offered).
    function serviceOf(address agent, bytes32 skill)
        external
        view
        returns (bool offered, uint256 price, string memory unit)
    {
        uint256 pos = _servicePos[agent][skill];
        if (pos == 0) return (false, 0, "");
        Service storage svc = _services[agent][pos - 1];
        return (true, svc.price, svc.unit);
    }

    /// @notice Whether an agent is registered, not suspended, its model not suspended, and
    ///         its bonded stake at least `minStake`. Honest agents deal only with active peers.
    /// @param agent The agent's wallet address.
    /// @return True if active.
    function isActive(address agent) public view returns (bool) {
        Agent storage a = _agents[agent];
        return a.registered && !a.suspended && !modelSuspended[a.modelFingerprint]
            && _bondedStake(a) >= minStake;
    }

    /// @notice Stake that backs the agent now: its stake minus a pending withdrawal that has
    ///         not lapsed (a lapsed request counts as bonded again). Use it, not `stake`, to
    ///         rank agents.
    /// @param agent The agent's wallet address.
    /// @return Stablecoin base units.
    function bondedStake(address agent) external view returns (uint256) {
        return _bondedStake(_agents[agent]);
    }

    /// @notice Whether the agent's stake is frozen: the agent is suspended, its current model
    ///         fingerprint is suspended, or `frozenByModel[agent]` is suspended.
    /// @param agent The agent's wallet address.
    /// @return True if `withdrawStake` would revert with `StakeFrozen`.
    function stakeFrozen(address agent) external view returns (bool) {
        return _stakeFrozen(agent, _agents[agent]);
    }

    /// @notice How many agents list a skill, inactive ones included (the pagination bound).
    /// @param skill The skill tag.
    /// @return The number of listings.
    function providerCount(bytes32 skill) external view returns (uint256) {
        return _providers[skill].length;
    }

    /// @notice Active agents (see `isActive`) that offer `skill`, scanning listings
    ///         [offset, offset + limit). Inactive agents are skipped, so a page may hold fewer
    ///         than `limit` agents.
    ///         Read every page of one listing at the same block tag (e.g. the block number of
    ///         the first page's `eth_call`): removing a listing moves the last one into its
    ///         place, so pages read at different blocks can skip or repeat agents.
    /// @param skill The skill tag.
    /// @param offset Index of the first listing to scan (0 to start).
    /// @param limit Most listings to scan (positive, else `ZeroLimit`).
    /// @return agents The active agents found in the scanned listings.
    /// @return next Offset of the next page, or 0 when the scan reached the end.
    function agentsBySkill(bytes32 skill, uint256 offset, uint256 limit)
        external
        view
        returns (address[] memory agents, uint256 next)
    {
        if (limit == 0) revert ZeroLimit();
        address[] storage list = _providers[skill];
        uint256 total = list.length;
        if (offset >= total) return (new address[](0), 0);
        uint256 end = total - offset > limit ? offset + limit : total;
        agents = new address[](end - offset);
        uint256 found;
        for (uint256 i = offset; i < end; ++i) {
            address agent = list[i];
            if (isActive(agent)) agents[found++] = agent;
        }
        assembly ("memory-safe") {
            mstore(agents, found) // shrink to the agents found
        }
        next = end == total ? 0 : end;
    }

    // ------------------------------------------------------------------ internals

    function _bondedStake(Agent storage a) private view returns (uint256 bonded) {
        bonded = a.stake;
        // A lapsed request is bonded again; with none pending this subtracts 0. Slashing keeps
        // pendingWithdrawal <= stake.
        if (block.timestamp < uint256(a.withdrawalReadyAt) + withdrawalWindow) {
            bonded -= a.pendingWithdrawal;
        }
    }

    function _stakeFrozen(address agent, Agent storage a) private view returns (bool) {
        // modelSuspended[0] is always false: the zero fingerprint cannot be suspended.
        return
            a.suspended || modelSuspended[a.modelFingerprint]
                || modelSuspended[frozenByModel[agent]];
    }

    function _addStake(Agent storage a, uint256 amount) private {
        uint256 stake = a.stake + amount;
        a.stake = stake;
        emit StakeAdded(msg.sender, amount, stake);
        token.transferFrom(msg.sender, address(this), amount);
    }

    function _replaceServices(address agent, Service[] calldata services) private {
        uint256 count = services.length;
        if (count > MAX_SERVICES) revert TooManyServices(count, MAX_SERVICES);
        Service[] storage list = _services[agent];
        for (uint256 i = list.length; i != 0; --i) {
            bytes32 skill = list[i - 1].skill;
            delete _servicePos[agent][skill];
            _removeProvider(skill, agent);
            list.pop();
        }
        for (uint256 i; i < count; ++i) {
            Service calldata svc = services[i];
            bytes32 skill = svc.skill;
            if (skill == bytes32(0)) revert EmptySkill();
            if (_servicePos[agent][skill] != 0) revert DuplicateSkill(skill);
            list.push(svc);
            _servicePos[agent][skill] = i + 1;
            _addProvider(skill, agent);
        }
        emit ServicesReplaced(agent, services);
    }

    function _addProvider(bytes32 skill, address agent) private {
        address[] storage list = _providers[skill];
        list.push(agent);
        _providerPos[skill][agent] = list.length;
    }

    function _removeProvider(bytes32 skill, address agent) private {
        address[] storage list = _providers[skill];
        uint256 pos = _providerPos[skill][agent];
        uint256 last = list.length;
        if (pos != last) {
            address moved = list[last - 1];
            list[pos - 1] = moved;
            _providerPos[skill][moved] = pos;
        }
        list.pop();
        delete _providerPos[skill][agent];
    }
}
