"""LocalChain's setup: deploying v33 accounts and ERC-20 tokens, creating funded wallets,
minting (:class:`ChainSetup`, a base class of :class:`~.chain.LocalChain`).

Deployment is not a transaction here: the contract appears at its counterfactual address (or
the one asked for) in a block of its own, its constructor run as on Starknet.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ChipiSessionError, ErrorCode
from ..felts import encode_short_string, parse_felt, split_u256
from ..keys import generate_private_key, public_key_of
from ..logs import get_logger
from ..types import WalletData, WalletType
from ..validate import check_int
from . import account, erc20
from .abi import ADDRESS_BOUND, Calldata
from .model import TxInfo
from .runtime import Frame, Handler, Runtime
from .state import ChainState

if TYPE_CHECKING:
    from ..vault import HighEntropyKey, Vault

__all__ = ["ChainSetup", "ACCOUNT_KIND", "ERC20_KIND"]

# deployments are logged as the chain's (docs/observability.md, "Loggers and levels")
log = get_logger("chipi_session.localchain.chain")

#: What ``ChainState.contracts`` records for each kind of contract (the runtime's class keys).
ACCOUNT_KIND = "account"
ERC20_KIND = "erc20"


class ChainSetup(abc.ABC):
    """The setup methods of :class:`~.chain.LocalChain`, on the chain's state and runtime."""

    vault: Vault | None
    _state: ChainState
    _runtime: Runtime
    _block_number: int

    @abc.abstractmethod
    def now(self) -> int: ...

    @abc.abstractmethod
    def _call_tx(
        self, caller: int, signature: Sequence[int] = (), nonce: int = 0, tx_hash: int = 0
    ) -> TxInfo: ...

    def create_wallet(
        self,
        encrypt_key: str | HighEntropyKey,
        *,
        private_key: int | None = None,
        wallet_type: WalletType = WalletType.CHIPI,
    ) -> WalletData:
        """Deploy a v33 account for a fresh (or the given) owner key; the key comes back
        encrypted with :attr:`vault` (a default-cost :class:`Vault` if none was given)."""
        from ..vault import Vault

        if self.vault is None:
            self.vault = Vault()
        key = generate_private_key() if private_key is None else private_key
        public_key = public_key_of(key)
        blob = self.vault.encrypt(key, encrypt_key)
        address = self.deploy_account(public_key)
        return WalletData(
            address=address,
            encrypted_private_key=blob,
            wallet_type=wallet_type,
            owner_public_key=public_key,
        )

    def deploy_account(self, owner_public_key: int, *, address: int | None = None) -> int:
        """Deploy a v33 account (constructor ``(public_key)``); returns its address, by default
        the counterfactual one (class hash, salt = public key, no deployer)."""
        public_key = parse_felt(owner_public_key, "owner_public_key")
        return self._deploy(
            ACCOUNT_KIND,
            account.V33_CLASS_HASH,
            account.CONSTRUCTOR,
            [public_key],
            public_key,
            address,
        )

    def deploy_token(
        self, symbol: str = "TKN", decimals: int = 18, *, address: int | None = None
    ) -> int:
        """Deploy an ERC-20 named and symbolized ``symbol`` with no supply (see :meth:`mint`)."""
        sym = encode_short_string(symbol, "symbol")
        check_int(decimals, "decimals", low=0, high=255)
        return self._deploy(
            ERC20_KIND,
            erc20.ERC20_CLASS_HASH,
            erc20.constructor,
            [sym, sym, decimals],
            sym,
            address,
        )

    def mint(self, token: int, to: int, amount: int) -> None:
        token = parse_felt(token, "token")
        to = parse_felt(to, "to")
        split_u256(amount)
        if self._state.contracts.get(token) != ERC20_KIND:
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"no token at {hex(token)}")
        self._runtime.begin_block(self.now(), self._block_number + 1)
        with self._state.journal.atomic():
            erc20.mint(Frame(self._runtime, token, 0, self._call_tx(0)), to, amount)

    def _deploy(
        self,
        kind: str,
        class_hash: int,
        constructor: Handler,
        calldata: list[int],
        salt: int,
        address: int | None,
    ) -> int:
        contracts = self._state.contracts
        if address is None:
            from starknet_py.hash.address import compute_address

            while True:
                address = int(
                    compute_address(
                        class_hash=class_hash,
                        constructor_calldata=calldata,
                        salt=salt,
                        deployer_address=0,
                    )
                )
                if address not in contracts:
                    break
                salt += 1
        else:
            address = parse_felt(address, "address")
            if not 0 < address < ADDRESS_BOUND:
                raise ChipiSessionError(ErrorCode.INVALID_INPUT, "address out of range")
            if address in contracts:
                raise ChipiSessionError(
                    ErrorCode.INVALID_INPUT, f"a contract is already deployed at {hex(address)}"
                )
        self._runtime.begin_block(self.now(), self._block_number + 1)
        with self._state.journal.atomic():
            contracts.set(address, kind)
            self._state.class_hashes.set(address, class_hash)
            constructor(Frame(self._runtime, address, 0, self._call_tx(0)), Calldata(calldata))
        log.debug("deployed %s at %#x", kind, address)
        return address
