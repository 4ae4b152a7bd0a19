// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title CandidateSelection — the SecCL candidate selection contract (CSC) of one run
/// @author The seccl-flwr contributors
/// @notice One deployment serves one federated-learning run. The server (the deployer,
/// `owner`) fixes the run's parameters at deployment, registers the participants (each
/// proven by its own signature), opens the run, then anchors the digests of the messages
/// of each round, relays the evaluators' signed score vectors ("ballots") and triggers
/// the election; every participant and any auditor can re-check all of it from the chain.
///
/// Opening a run (nothing of it can change afterwards):
/// 1. `constructor(runId, params)` — `Params`: the number `M` of candidates, the ballot
///    quorum of `elect`, the share fraction (ppm), per-tensor sharing, the election
///    rule (0 = truncated Borda, 1 = median score, 2 = median rank) and the committee
///    size `k` (0 = full cross-evaluation, the SecCL paper's); `openingBlock()` is this
///    block.
/// 2. `register(accounts, joinSignatures)` — in one or more owner batches; each account
///    signs the EIP-712 `Join(runId, participant)` under the domain ("SecCL", "1",
///    chainId) *without* `verifyingContract`, so it can sign before the contract exists.
/// 3. `open()` — checks `1 <= M <= n`, `1 <= quorum <= n`, `k <= n - 1` and, for the
///    median rules (1 and 2), `n <= MAX_MEDIAN_PARTICIPANTS` (k = 0) or
///    `n * ceil(k / 8) <= MAX_MEDIAN_WORDS` (k >= 1), stores `rosterDigest() =
///    keccak256(abi.encodePacked(participants))` (each address as a 32-byte word) and
///    emits `RunOpened`. `register` reverts from here on, every round function before.
///
/// Round life cycle (`r = currentRound() = lastCompletedRound() + 1`):
/// 1. `anchor(r, UPDATE, authors, digests)` — digests of the round's model updates
///    (one or more batches); `roundSeed(r)` is the XOR of these digests;
/// 2. `sealUpdates(r)` — no more updates of `r`; its block `B = sealBlockOf(r)`
///    seeds the round's committees. Required with committees (`k >= 1`), optional with
///    k = 0, where the first ballot seals the updates as well; either way the seal
///    fixes `roundSeed(r)`;
/// 3. `submitBallots(r, ballots)` — one EIP-712 signed ballot per evaluator, possibly in
///    several transactions (batches). k = 0: a ballot scores exactly the round's
///    update authors other than its evaluator. k >= 1: the first ballot (in a block
///    after `B`, within 256 blocks) draws the committees from `keccak256(abi.encode(
///    blockhash(B), roundSeed(r)))` (`committeeSeedOf`, `committeeSlotsOf`); only
///    update authors vote, each scoring exactly its `k_eff = min(k, m - 1)` assigned
///    peers (`seccl_flwr.protocol.committee`, see `submitBallots`);
/// 4. `elect(r)` (truncated Borda) or `electByMedian(r, medians)` (median rules, the
///    medians verified on chain) — over at least `quorum` ballots, result stored and
///    emitted;
/// 5. `anchor(r, GLOBAL_MODEL, [owner], [digest])` — digest of the new global model;
///    this completes round `r`. Round 0's GLOBAL_MODEL is the initial model.
/// `anchor(r', EVALUATION, ...)` records federated-evaluation replies of completed rounds.
///
/// Election rules (identical to `seccl_flwr.protocol.borda`, the Python oracle):
/// * The tie order of round `r`: participant `p` ranks before `q` on equal score or
///   total if `keccak256(abi.encode(roundSeed(r), p)) < keccak256(abi.encode(roundSeed(r), q))`.
///   The seed is fixed by the authors' signed update digests, so the server cannot
///   choose the order (short of withholding updates, which clients detect).
/// * Rule 0, truncated Borda (the SecCL paper): per ballot the peers are ranked by
///   score, highest first, ties in the tie order; the top `min(M, k)` of the ballot's
///   `k` peers get `M, M-1, ...` points. An author's standing is its total; with
///   committees (`k >= 1` in `Params`) it is normalised for partial ballots:
///   `floor(points * 1e6 / received)`, `received` the ballots that scored it (0 if none).
/// * Rule 1, median score: an author's standing is the lower median of the scores it
///   received (the `ceil(k/2)`-th smallest of its `k` scores; 0 if none). Colluders
///   below half of the ballots scoring an author cannot lift it above, nor push it
///   below, the range of the scores the other evaluators gave it.
/// * Rule 2, median rank: rule 1 over ranks instead of scores. A ballot's scores are
///   replaced by their ranks within the ballot, scaled to `[0, MAX_SCORE]`: over the
///   ballot's `k` scores, `floor((2 * #lower + #equal - 1) * 1e6 / (2 * (k - 1)))`
///   (ties share their mean rank; `MAX_SCORE / 2` if `k = 1`). An evaluator whose
///   validation data makes every model look better or worse then moves no standing,
///   which denies stealthy colluders the spread of an update's raw scores to hide a
///   slightly worse, poisoned update in.
/// * The round's update authors are ranked by standing, highest first, ties in the
///   tie order. The first `min(M, #authors)` are elected.
/// The contract compares the top 216 bits of the tie hashes (then the anchoring
/// position): it differs from the full 256-bit order only if two of at most 256 hashes
/// share their first 216 bits, a keccak near-collision nobody can produce.
///
/// Why the server cannot choose the committees: the updates (hence `roundSeed`) are
/// fixed by the seal before block `B` exists, `blockhash(B)` is unknown until `B` is
/// published, and neither the seal nor a round's updates can be redone. A server that
/// also produces the chain's blocks could withhold `B` and retry: the trust model
/// needs a chain the server does not produce.
///
/// Gas: a ballot with `k <= n-1` peers costs O(k) for validation. Borda: plus hashing
/// and O(k + M log k) memory operations for the partial heapsort of its top `M` peers,
/// O(M) storage writes (points); `elect` is O(#authors log #authors). Median: the
/// ballot's scores are stored packed, 8 per word (ceil(#authors / 8) storage writes);
/// `electByMedian` reads every ballot's words and verifies each author's claimed
/// median in O(#ballots) memory operations, O(#ballots * #authors) in all, which
/// bounds the rule to `MAX_MEDIAN_PARTICIPANTS` (104) participants: 11.0 M gas at
/// n = 100 on anvil, 13.5 M at n = 112, within 80 % of the cap up to 104. With
/// committees a ballot stores ceil(k_eff / 8) words by its evaluator's slot and
/// `electByMedian` reads `#authors * ceil(k_eff / 8)` words, O(#authors * k_eff) in
/// all, bounded by `MAX_MEDIAN_WORDS` (1352) words: chain cost O(n * k). Every batch
/// function can be split into transactions of any size; `seccl_flwr.chain.gas` sizes
/// them from measured costs so that each transaction stays under the 2^24
/// per-transaction cap of EIP-7825 for every n <= 256.
///
/// Signatures of messages and ballots are EIP-712 over the domain ("SecCL", "1",
/// block.chainid, this contract), computed at call time, so a ballot cannot be replayed
/// on another chain, contract, run or round. Join signatures bind the run id and the
/// chain id. There are no `immutable` variables: the runtime code is identical for
/// every run, which lets clients recognise the contract by its code.
contract CandidateSelection {
    // ------------------------------------------------------------------ constants

    /// @dev Message kind of a model update.
    uint8 private constant KIND_UPDATE = 1;
    /// @dev Message kind of a ballot (only written by `submitBallots`).
    uint8 private constant KIND_BALLOT = 2;
    /// @dev Message kind of a global model.
    uint8 private constant KIND_GLOBAL_MODEL = 3;
    /// @dev Message kind of a federated-evaluation reply.
    uint8 private constant KIND_EVALUATION = 4;
    /// @dev Largest admissible score (macro F1 x 1e6).
    uint32 private constant MAX_SCORE = 1_000_000;
    /// @dev Largest number of participants of a run.
    uint256 private constant MAX_PARTICIPANTS = 256;
    /// @dev The share fraction is given in parts per million, `(0, 1e6]`.
    uint32 private constant PPM = 1_000_000;
    /// @dev Election rule 0: truncated Borda (the SecCL paper's).
    uint8 private constant RULE_TRUNCATED_BORDA = 0;
    /// @dev Election rule 1: lower median of each author's received scores.
    uint8 private constant RULE_MEDIAN_SCORE = 1;
    /// @dev Election rule 2: lower median of each author's received ranks (rule 1 over
    /// every ballot's scores replaced by their scaled ranks within the ballot).
    uint8 private constant RULE_MEDIAN_RANK = 2;
    /// @dev The most participants of a run under the median rule: its `elect` then
    /// stays under the 2^24 transaction gas cap (EIP-7825), measured in tests/test_gas.py.
    uint256 private constant MAX_MEDIAN_PARTICIPANTS = 104;
    /// @dev Under the median rule with committees (`k >= 1`), the most storage words
    /// `electByMedian` may read, `n * ceil(k / 8)`: as many as a full cross-evaluation
    /// at `MAX_MEDIAN_PARTICIPANTS` reads (104 * 13). Measured on anvil
    /// (tests/test_gas.py, benchmarks/scale_gas.py): 9.4 M gas at n = 169, k = 64
    /// (1352 words), 10.5 M at n = 256, k = 40 (1280 words), 7.9 M at n = 100, k = 99.
    uint256 private constant MAX_MEDIAN_WORDS = 1352;
    /// @dev Scores packed per storage word under the median rule (32 bits each).
    uint256 private constant SCORES_PER_WORD = 8;

    // The EIP-712 type strings below are longer than 32 bytes by definition (EIP-712
    // fixes their text). They are hashed at compile time: no string is stored in the
    // bytecode or in memory, so solhint's gas-small-strings does not apply.
    // solhint-disable gas-small-strings
    bytes32 private constant _DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );
    bytes32 private constant _JOIN_DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId)"
    );
    bytes32 private constant _NAME_HASH = keccak256("SecCL");
    bytes32 private constant _VERSION_HASH = keccak256("1");
    bytes32 private constant _MESSAGE_TYPEHASH = keccak256(
        "Message(bytes32 runId,uint32 round,uint8 kind,address author,bytes32 payloadHash)"
    );
    bytes32 private constant _BALLOT_TYPEHASH = keccak256(
        "Ballot(bytes32 runId,uint32 round,address evaluator,address[] peers,uint32[] scores)"
    );
    bytes32 private constant _JOIN_TYPEHASH = keccak256("Join(bytes32 runId,address participant)");
    // solhint-enable gas-small-strings
    /// @dev secp256k1n / 2: larger `s` values are malleable and rejected.
    uint256 private constant _HALF_ORDER =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    // ---------------------------------------------------------------------- types

    /// @notice The protocol parameters of a run, fixed at deployment.
    /// @param numCandidates The number `M` of candidates elected per round, `1 <= M <= n`.
    /// @param quorum The least number of ballots `elect` accepts, `1 <= quorum <= n`.
    /// @param shareFractionPpm The fraction of an update's entries a client shares, in
    /// parts per million, `1..1_000_000` (enforced by the clients, recorded here).
    /// @param perTensor Whether the share fraction applies per tensor (else to the
    /// whole flattened update); enforced by the clients, recorded here.
    /// @param electionRule The election rule: 0 = truncated Borda, 1 = median score,
    /// 2 = median rank.
    /// @param committeeSize The committee size `k`: 0 = full cross-evaluation (every
    /// author scores every other author, the SecCL paper); `1 <= k <= n - 1`: every
    /// author scores `k_eff = min(k, m - 1)` peers drawn per round (`m` authors).
    struct Params {
        uint16 numCandidates;
        uint16 quorum;
        uint32 shareFractionPpm;
        bool perTensor;
        uint8 electionRule;
        uint16 committeeSize;
    }

    /// @notice A signed score vector of one evaluator for one round.
    /// @param evaluator The participant that scored its peers (and signed).
    /// @param peers The scored update authors, in any order: the round's authors other
    /// than the evaluator (committee size 0), or exactly the evaluator's assigned peers.
    /// @param scores Score of each peer, in `[0, MAX_SCORE]`.
    /// @param signature 65-byte `r || s || v` EIP-712 signature of the evaluator over
    /// `Ballot(runId, round, evaluator, peers, scores)`.
    struct Ballot {
        address evaluator;
        address[] peers;
        uint32[] scores;
        bytes signature;
    }

    /// @dev Per-round data of one update author; packed in one storage slot. `points`
    /// is its standing: Borda points, or (from `elect` on) its median score.
    struct AuthorInfo {
        bool isAuthor;
        uint8 index;
        uint8 position;
        uint32 points;
    }

    /// @dev Everything recorded about one round.
    struct RoundState {
        address[] authors;
        address[] evaluators;
        address[] candidates;
        bool elected;
        // block of `sealUpdates` (0: not sealed); shares the slot of `elected`
        uint64 sealBlock;
        bytes32 seed;
        // committee runs: keccak256(abi.encode(blockhash(sealBlock), seed)), drawn at
        // the round's first ballot (0 before)
        bytes32 committeeSeed;
        mapping(address => AuthorInfo) info;
        // median rule, committee size 0: word `b * ceil(#authors / 8) + position / 8`
        // holds, in bits `32 * (position % 8)`, 1 + the score ballot `b` gave the
        // author at `position` (0: no score, the evaluator's own position).
        // Committee runs: word `t * ceil(k_eff / 8) + (j - 1) / 8` holds, in bits
        // `32 * ((j - 1) % 8)`, 1 + the score the evaluator at slot `t` gave the
        // author at slot `t + j mod #authors`, `1 <= j <= k_eff` (0: no ballot).
        mapping(uint256 => uint256) packedScores;
        // committee runs: the slot of the author at anchoring position `p` is byte
        // `p % 32` (low byte first) of word `p / 32`
        uint256[8] slotOf;
    }

    /// @dev A round's committee, loaded into memory once per `submitBallots`/election.
    struct Committee {
        uint256 authors; // m
        uint256 size; // k_eff = min(k, m - 1)
        uint256[8] slotOf; // as `RoundState.slotOf`
        uint256 evaluatorSlot; // the slot of the ballot being read
        bytes32 seed; // the round's tie-order seed (`roundSeed`)
    }

    // -------------------------------------------------------------------- storage

    // Slither (immutable-states) suggests `immutable` for `_owner`, `_runId` and
    // `_openingBlock`. Deliberately not: immutables are embedded in the runtime code,
    // which would then differ per run, and clients recognise the contract by comparing
    // its runtime code with the packaged artifact (see the contract NatSpec). The cost
    // is one SLOAD (2,100 gas cold) per read.
    // slither-disable-start immutable-states
    address private _owner;
    uint32 private _lastCompletedRound;
    bool private _open;
    bytes32 private _runId;
    uint256 private _openingBlock;
    // slither-disable-end immutable-states
    Params private _params;
    bytes32 private _rosterDigest;
    address[] private _participants;
    mapping(address => uint256) private _indexPlusOne;
    mapping(uint32 => mapping(uint8 => mapping(address => bytes32))) private _anchors;
    mapping(uint32 => RoundState) private _rounds;

    // --------------------------------------------------------------------- events

    /// @notice A participant joined the roster (before the run opened).
    /// @param participant The participant, whose join signature was verified.
    /// @param index Its registration index.
    event Registered(address indexed participant, uint256 indexed index);
    /// @notice The run was opened: roster and parameters are final.
    /// @param runId The run identifier.
    /// @param owner The server (deployer).
    /// @param chainId The chain id.
    /// @param rosterDigest `keccak256(abi.encodePacked(participants))`.
    /// @param numParticipants The number `n` of participants.
    /// @param params The run's parameters.
    event RunOpened(
        bytes32 indexed runId,
        address indexed owner,
        uint256 chainId,
        bytes32 rosterDigest,
        uint256 numParticipants,
        Params params
    );
    /// @notice A message digest was anchored.
    /// @param round The round of the message.
    /// @param kind The message kind (1 UPDATE, 3 GLOBAL_MODEL, 4 EVALUATION).
    /// @param author The message author.
    /// @param digest The EIP-712 message digest.
    event Anchored(uint32 indexed round, uint8 indexed kind, address indexed author, bytes32 digest);
    /// @notice A ballot was accepted.
    /// @param round The round of the ballot.
    /// @param evaluator The evaluator (signer) of the ballot.
    /// @param digest The EIP-712 digest of the ballot.
    event BallotCast(uint32 indexed round, address indexed evaluator, bytes32 digest);
    /// @notice The candidates of a round were elected, best first, with their totals.
    /// @param round The elected round.
    /// @param candidates The elected candidates, best first.
    /// @param totals Their standings (Borda points or median scores).
    event Elected(uint32 indexed round, address[] candidates, uint32[] totals);
    /// @notice The round's updates were sealed: no update can be anchored any more.
    /// @param round The sealed round.
    /// @param sealBlock The block of the seal, whose hash seeds the round's committees.
    event RoundSealed(uint32 indexed round, uint256 indexed sealBlock);
    /// @notice A committee run drew the round's committees (at its first ballot).
    /// @param round The round.
    /// @param committeeSeed `keccak256(abi.encode(blockhash(sealBlock), roundSeed(round)))`.
    event CommitteeDrawn(uint32 indexed round, bytes32 committeeSeed);

    // --------------------------------------------------------------------- errors

    /// @notice The caller is not the owner (server).
    error NotOwner(address caller);
    /// @notice The run is not open yet: round functions wait for `open()`.
    error RunNotOpen();
    /// @notice The run is open: the roster and parameters can no longer change.
    error RunAlreadyOpen();
    /// @notice The number of participants is not in `[1, MAX_PARTICIPANTS]`.
    error InvalidParticipantCount(uint256 count);
    /// @notice The zero address was given as a participant.
    error ZeroAddressParticipant();
    /// @notice A participant was listed twice.
    error DuplicateParticipant(address participant);
    /// @notice A join signature is malformed (`recovered == 0`) or not the participant's.
    error InvalidJoinSignature(address participant, address recovered);
    /// @notice The number of candidates is not in `[1, numParticipants]` (at deployment,
    /// `numParticipants` is `MAX_PARTICIPANTS`).
    error InvalidCandidateCount(uint256 numCandidates, uint256 numParticipants);
    /// @notice The quorum is not in `[1, numParticipants]` (at deployment,
    /// `numParticipants` is `MAX_PARTICIPANTS`).
    error InvalidQuorum(uint256 quorum, uint256 numParticipants);
    /// @notice The share fraction is not in `[1, 1_000_000]` ppm.
    error InvalidShareFraction(uint32 shareFractionPpm);
    /// @notice The election rule is not one this contract implements.
    error UnsupportedElectionRule(uint8 electionRule);
    /// @notice The run's election rule elects with the other function (`elect` for
    /// truncated Borda, `electByMedian` for the median rules).
    error WrongElectionRule(uint8 electionRule, uint8 expected);
    /// @notice A claimed median is not the lower median of the author's received scores.
    error WrongMedian(uint32 round, address author, uint32 claimed);
    /// @notice The run has more participants than its election rule supports under the
    /// transaction gas cap (`MAX_MEDIAN_PARTICIPANTS` for the median rule).
    error TooManyParticipantsForRule(uint8 electionRule, uint256 numParticipants, uint256 maximum);
    /// @notice The committee size is above `numParticipants - 1` (at deployment,
    /// `numParticipants` is `MAX_PARTICIPANTS`).
    error InvalidCommitteeSize(uint256 committeeSize, uint256 numParticipants);
    /// @notice Under the median rule with committees, `electByMedian` would read more
    /// than `MAX_MEDIAN_WORDS` storage words: `words = n * ceil(k / 8)`.
    error TooManyScoresForMedian(uint256 numParticipants, uint256 committeeSize, uint256 words, uint256 maximum);
    /// @notice Two arrays that must have equal lengths do not.
    error LengthMismatch(uint256 a, uint256 b);
    /// @notice A batch is empty.
    error EmptyBatch();
    /// @notice A zero digest was given.
    error ZeroDigest();
    /// @notice `(round, kind, author)` already has a digest.
    error AlreadyAnchored(uint32 round, uint8 kind, address author);
    /// @notice The kind cannot be anchored with `anchor`.
    error InvalidKind(uint8 kind);
    /// @notice The round is not the one expected.
    error WrongRound(uint32 round, uint32 expected);
    /// @notice The account is not a participant (or not the owner where the owner is required).
    error UnknownParticipant(address account);
    /// @notice Updates of the round can no longer be anchored, or sealed again (sealed,
    /// ballots exist or it is elected).
    error UpdatesSealed(uint32 round);
    /// @notice A committee run takes ballots only once `sealUpdates(round)` ran.
    error UpdatesNotSealed(uint32 round);
    /// @notice `blockhash(sealBlock)` is not available: the first ballot of a committee
    /// run came in the seal's own block or more than 256 blocks after it. In the latter
    /// case the round cannot draw its committees any more.
    error CommitteeSeedUnavailable(uint32 round, uint256 sealBlock);
    /// @notice In a committee run, the ballot of `evaluator` scores `peer`, which is not
    /// one of its assigned peers.
    error NotAssigned(uint32 round, address evaluator, address peer);
    /// @notice The round has not been elected.
    error NotElected(uint32 round);
    /// @notice The round has no anchored update.
    error NoUpdates(uint32 round);
    /// @notice The round has already been elected.
    error AlreadyElected(uint32 round);
    /// @notice Fewer ballots than the quorum were cast in the round.
    error QuorumNotReached(uint32 round, uint256 ballots, uint256 quorum);
    /// @notice The evaluator already cast a ballot in the round.
    error DuplicateBallot(uint32 round, address evaluator);
    /// @notice A ballot scores its own evaluator.
    error SelfScore(address evaluator);
    /// @notice A ballot scores a peer that anchored no update in the round, or (in a
    /// committee run) comes from an evaluator that anchored none (then `peer` is the
    /// evaluator).
    error NotAnAuthor(uint32 round, address peer);
    /// @notice A ballot scores the same peer twice.
    error DuplicatePeer(address peer);
    /// @notice A ballot does not score every update author of the round other than its
    /// evaluator (committee runs: all of its `k_eff` assigned peers): it has `peers`
    /// peers where `expected` are required.
    error IncompleteBallot(uint32 round, address evaluator, uint256 peers, uint256 expected);
    /// @notice A score exceeds `MAX_SCORE`.
    error ScoreOutOfRange(uint32 score);
    /// @notice A ballot signature is malformed (`recovered == 0`) or not the evaluator's.
    error InvalidSignature(address evaluator, address recovered);

    // ------------------------------------------------------------------ modifiers

    modifier onlyOwner() {
        if (msg.sender != _owner) revert NotOwner(msg.sender);
        _;
    }

    modifier whenOpen() {
        if (!_open) revert RunNotOpen();
        _;
    }

    modifier beforeOpen() {
        if (_open) revert RunAlreadyOpen();
        _;
    }

    // ---------------------------------------------------------------- constructor

    /// @notice Create a run with fixed parameters; participants follow with `register`.
    /// @dev Checks what does not depend on the roster: `1 <= M <= 256`,
    /// `1 <= quorum <= 256`, `1 <= shareFractionPpm <= 1e6`, election rule 0, 1 or 2,
    /// committee size at most 255; `open()` checks `M <= n`, `quorum <= n`, `k <= n - 1`
    /// and the rule's size limit.
    /// @param runId_ 32-byte identifier of the run (signed by every participant's join).
    /// @param params_ The run's parameters.
    constructor(bytes32 runId_, Params memory params_) {
        if (params_.electionRule > RULE_MEDIAN_RANK) {
            revert UnsupportedElectionRule(params_.electionRule);
        }
        if (params_.numCandidates == 0 || params_.numCandidates > MAX_PARTICIPANTS) {
            revert InvalidCandidateCount(params_.numCandidates, MAX_PARTICIPANTS);
        }
        if (params_.quorum == 0 || params_.quorum > MAX_PARTICIPANTS) {
            revert InvalidQuorum(params_.quorum, MAX_PARTICIPANTS);
        }
        if (params_.shareFractionPpm == 0 || params_.shareFractionPpm > PPM) {
            revert InvalidShareFraction(params_.shareFractionPpm);
        }
        if (params_.committeeSize > MAX_PARTICIPANTS - 1) {
            revert InvalidCommitteeSize(params_.committeeSize, MAX_PARTICIPANTS);
        }
        _owner = msg.sender;
        _runId = runId_;
        _params = params_;
        _openingBlock = block.number;
    }

    // --------------------------------------------------------------- registration

    /// @notice Add participants to the roster (owner, before `open`; any number of batches).
    /// @dev Each account must be new and non-zero, and its signature a 65-byte low-s
    /// EIP-712 signature by the account of `Join(runId, account)` under the domain
    /// ("SecCL", "1", block.chainid) — no `verifyingContract`. Registration indices
    /// follow the call order. Any invalid entry reverts the whole batch.
    /// @param accounts The participant addresses.
    /// @param joinSignatures One join signature per account.
    function register(address[] calldata accounts, bytes[] calldata joinSignatures)
        external
        onlyOwner
        beforeOpen
    {
        uint256 count = accounts.length;
        if (count != joinSignatures.length) revert LengthMismatch(count, joinSignatures.length);
        if (count == 0) revert EmptyBatch();
        uint256 first = _participants.length;
        if (first + count > MAX_PARTICIPANTS) revert InvalidParticipantCount(first + count);
        bytes32 domain = joinDomainSeparator();
        bytes32 runId_ = _runId;
        for (uint256 i = 0; i < count; ++i) {
            address account = accounts[i];
            if (account == address(0)) revert ZeroAddressParticipant();
            if (_indexPlusOne[account] != 0) revert DuplicateParticipant(account);
            bytes32 digest = _typedDigest(domain, keccak256(abi.encode(_JOIN_TYPEHASH, runId_, account)));
            address recovered = _recover(digest, joinSignatures[i]);
            if (recovered != account) revert InvalidJoinSignature(account, recovered);
            _indexPlusOne[account] = first + i + 1;
            _participants.push(account);
            emit Registered(account, first + i);
        }
    }

    /// @notice Seal the roster and open the run (owner, once).
    /// @dev Checks `n >= 1`, `M <= n`, `quorum <= n`, committee size `k <= n - 1`
    /// (`InvalidCommitteeSize`) and, under the median rule, the words `electByMedian`
    /// reads: `n <= MAX_MEDIAN_PARTICIPANTS` for `k = 0` (`TooManyParticipantsForRule`),
    /// `n * ceil(k / 8) <= MAX_MEDIAN_WORDS` for `k >= 1` (`TooManyScoresForMedian`);
    /// stores the roster digest
    /// `keccak256(abi.encodePacked(participants))` (each address padded to 32 bytes, in
    /// registration order) and emits `RunOpened`.
    function open() external onlyOwner beforeOpen {
        uint256 n = _participants.length;
        if (n == 0) revert InvalidParticipantCount(0);
        Params memory runParams = _params;
        if (runParams.numCandidates > n) revert InvalidCandidateCount(runParams.numCandidates, n);
        if (runParams.quorum > n) revert InvalidQuorum(runParams.quorum, n);
        uint256 k = runParams.committeeSize;
        if (k > n - 1) revert InvalidCommitteeSize(k, n);
        if (runParams.electionRule != RULE_TRUNCATED_BORDA) {
            if (k == 0 && n > MAX_MEDIAN_PARTICIPANTS) {
                revert TooManyParticipantsForRule(runParams.electionRule, n, MAX_MEDIAN_PARTICIPANTS);
            }
            uint256 words = n * _wordsPerBallot(k);
            if (k != 0 && words > MAX_MEDIAN_WORDS) {
                revert TooManyScoresForMedian(n, k, words, MAX_MEDIAN_WORDS);
            }
        }
        bytes32 digest = keccak256(abi.encodePacked(_participants));
        _rosterDigest = digest;
        _open = true;
        emit RunOpened(_runId, msg.sender, block.chainid, digest, n, runParams);
    }

    // -------------------------------------------------------------------- anchors

    /// @notice Anchor the digests of one phase of a round in one transaction.
    /// @dev UPDATE: `round == currentRound()`, authors are participants, not after
    /// `sealUpdates(round)`, the round's first ballot or election. GLOBAL_MODEL: the only author is the owner;
    /// round 0 (initial model) once before any round completes, round `r >= 1` only
    /// when `r == currentRound()` is elected — this completes round `r`. EVALUATION:
    /// authors are participants and `1 <= round <= lastCompletedRound()`.
    /// No `(round, kind, author)` can be anchored twice; digests are non-zero. UPDATE
    /// digests are XORed into `roundSeed(round)`. Reverts `RunNotOpen` before `open`.
    /// @param round The round the messages belong to.
    /// @param kind 1 (UPDATE), 3 (GLOBAL_MODEL) or 4 (EVALUATION).
    /// @param authors The message authors.
    /// @param digests The EIP-712 message digests, one per author.
    function anchor(uint32 round, uint8 kind, address[] calldata authors, bytes32[] calldata digests)
        external
        onlyOwner
        whenOpen
    {
        if (kind != KIND_UPDATE && kind != KIND_GLOBAL_MODEL && kind != KIND_EVALUATION) {
            revert InvalidKind(kind);
        }
        if (authors.length != digests.length) revert LengthMismatch(authors.length, digests.length);
        if (authors.length == 0) revert EmptyBatch();

        RoundState storage rs = _rounds[round];
        _checkAnchorRound(round, kind, rs);

        mapping(address => bytes32) storage slots = _anchors[round][kind];
        bytes32 seed = rs.seed;
        for (uint256 i = 0; i < authors.length; ++i) {
            address author = authors[i];
            bytes32 digest = digests[i];
            uint256 indexPlusOne = _checkAnchorAuthor(kind, author);
            if (digest == bytes32(0)) revert ZeroDigest();
            if (slots[author] != bytes32(0)) revert AlreadyAnchored(round, kind, author);
            slots[author] = digest;
            if (kind == KIND_UPDATE) {
                rs.info[author] = AuthorInfo({
                    isAuthor: true,
                    index: uint8(indexPlusOne - 1),
                    position: uint8(rs.authors.length),
                    points: 0
                });
                rs.authors.push(author);
                seed ^= digest;
            }
            emit Anchored(round, kind, author, digest);
        }
        if (kind == KIND_UPDATE) {
            rs.seed = seed;
        }
        if (kind == KIND_GLOBAL_MODEL && round != 0) {
            _lastCompletedRound = round;
        }
    }

    /// @dev The round rules of `anchor` for `kind` (see there); reverts `WrongRound`,
    /// `UpdatesSealed` or `NotElected`.
    function _checkAnchorRound(uint32 round, uint8 kind, RoundState storage rs) private view {
        uint32 current = _lastCompletedRound + 1;
        if (kind == KIND_UPDATE) {
            if (round != current) revert WrongRound(round, current);
            if (rs.elected || rs.sealBlock != 0 || rs.evaluators.length != 0) revert UpdatesSealed(round);
        } else if (kind == KIND_GLOBAL_MODEL) {
            if (round == 0) {
                if (_lastCompletedRound != 0) revert WrongRound(round, current);
            } else {
                if (round != current) revert WrongRound(round, current);
                if (!rs.elected) revert NotElected(round);
            }
        } else {
            if (round == 0 || round > _lastCompletedRound) {
                revert WrongRound(round, _lastCompletedRound);
            }
        }
    }

    /// @dev The author rule of `anchor`: the owner for GLOBAL_MODEL, else a participant;
    /// reverts `UnknownParticipant`. Returns the author's `_indexPlusOne` (0 for the
    /// owner of a GLOBAL_MODEL who is not a participant).
    function _checkAnchorAuthor(uint8 kind, address author) private view returns (uint256 indexPlusOne) {
        indexPlusOne = _indexPlusOne[author];
        if (kind == KIND_GLOBAL_MODEL) {
            if (author != _owner) revert UnknownParticipant(author);
        } else if (indexPlusOne == 0) {
            revert UnknownParticipant(author);
        }
    }

    /// @notice Seal the updates of the current round (owner, once per round): no update
    /// can be anchored afterwards, and this block's hash seeds the round's committees.
    /// @dev Required before the first ballot of a committee run (`UpdatesNotSealed`);
    /// optional in a run of committee size 0, where the first ballot seals as well.
    /// Stores `sealBlockOf(round) = block.number` and emits `RoundSealed`. The
    /// committees are drawn at the round's first ballot, which must come in a later
    /// block and within 256 blocks (`CommitteeSeedUnavailable` otherwise). Reverts
    /// `WrongRound`, `NoUpdates`, or `UpdatesSealed` if already sealed (explicitly, by a
    /// ballot or by the election).
    /// @param round The current round.
    function sealUpdates(uint32 round) external onlyOwner whenOpen {
        uint32 current = _lastCompletedRound + 1;
        if (round != current) revert WrongRound(round, current);
        RoundState storage rs = _rounds[round];
        if (rs.authors.length == 0) revert NoUpdates(round);
        if (rs.elected || rs.sealBlock != 0 || rs.evaluators.length != 0) revert UpdatesSealed(round);
        rs.sealBlock = uint64(block.number);
        emit RoundSealed(round, block.number);
    }

    // -------------------------------------------------------------------- ballots

    /// @notice Submit signed ballots of the current round (may be called several times).
    /// @dev Any invalid ballot reverts the whole call. Per ballot, in this order: the
    /// round is current and has updates, it is not elected, the evaluator is a
    /// participant without an earlier ballot, `peers`/`scores` lengths match, every
    /// peer is not the evaluator, anchored an update this round and appears once, every
    /// score is at most `MAX_SCORE`, the peers are all the round's authors other than
    /// the evaluator (`IncompleteBallot`), and the signature is a 65-byte low-s EIP-712
    /// signature of the evaluator. Cost O(k + M log k) per ballot of `k` peers (Borda),
    /// O(k) plus ceil(#authors / 8) storage writes (median).
    ///
    /// Committee runs (`committeeSize = k >= 1`, `m` authors, `k_eff = min(k, m - 1)`):
    /// the round must be sealed (`UpdatesNotSealed`). The first ballot of the round
    /// draws the committees: committee seed `keccak256(abi.encode(blockhash(sealBlock),
    /// roundSeed(round)))` (`CommitteeSeedUnavailable` if that hash is 0: the seal's
    /// own block, or more than 256 blocks later), then a Fisher-Yates order of the
    /// anchoring positions: for `i = m-1` down to 1, `j = uint256(keccak256(abi.encode(
    /// seed, i))) % (i + 1)`, swap `order[i]` and `order[j]`; the author at position
    /// `order[t]` gets slot `t` (`committeeSlotsOf`); emits `CommitteeDrawn`. The
    /// evaluator must be an update author (`NotAnAuthor`), and its peers exactly the
    /// authors at slots `t+1, ..., t+k_eff` (mod `m`) from its slot `t`, in any order
    /// (`NotAssigned`, `IncompleteBallot` with `expected = k_eff`). Cost O(k_eff +
    /// M log k_eff) per ballot (Borda), O(k_eff) and ceil(k_eff / 8) storage writes
    /// (median), plus O(m) once for the draw (`seccl_flwr.protocol.committee`).
    /// @param round The current round.
    /// @param ballots The ballots.
    function submitBallots(uint32 round, Ballot[] calldata ballots) external onlyOwner whenOpen {
        if (ballots.length == 0) revert EmptyBatch();
        uint32 current = _lastCompletedRound + 1;
        if (round != current) revert WrongRound(round, current);
        RoundState storage rs = _rounds[round];
        if (rs.authors.length == 0) revert NoUpdates(round);
        if (rs.elected) revert AlreadyElected(round);

        bytes32 domain = domainSeparator();
        Params memory runParams = _params;
        uint256 m = runParams.electionRule == RULE_TRUNCATED_BORDA ? runParams.numCandidates : 0;
        Committee memory committee = _ballotCommittee(round, rs, runParams.committeeSize);
        for (uint256 b = 0; b < ballots.length; ++b) {
            _castBallot(round, rs, ballots[b], domain, m, committee);
        }
    }

    /// @dev The committee ballots are checked against: none (`authors == 0`) for
    /// committee size 0, else the round's drawn committee (`_drawnCommittee`).
    function _ballotCommittee(uint32 round, RoundState storage rs, uint256 k)
        private
        returns (Committee memory c)
    {
        if (k != 0) c = _drawnCommittee(round, rs, k);
    }

    /// @dev The round's committee of a committee run of size `k`, drawn and stored at
    /// the round's first ballot (see `submitBallots`), else read from storage.
    function _drawnCommittee(uint32 round, RoundState storage rs, uint256 k)
        private
        returns (Committee memory c)
    {
        if (rs.committeeSeed == bytes32(0)) {
            uint256 sealBlock = rs.sealBlock;
            if (sealBlock == 0) revert UpdatesNotSealed(round);
            bytes32 hash = blockhash(sealBlock);
            if (hash == bytes32(0)) revert CommitteeSeedUnavailable(round, sealBlock);
            bytes32 committeeSeed = keccak256(abi.encode(hash, rs.seed));
            uint256 a = rs.authors.length;
            c.authors = a;
            c.size = k < a - 1 ? k : a - 1;
            c.slotOf = _committeeSlots(committeeSeed, a);
            c.seed = rs.seed;
            for (uint256 w = 0; w < (a + 31) / 32; ++w) {
                rs.slotOf[w] = c.slotOf[w];
            }
            rs.committeeSeed = committeeSeed;
            emit CommitteeDrawn(round, committeeSeed);
        } else {
            c = _storedCommittee(rs, k);
        }
    }

    /// @dev The stored committee of a round whose committees are drawn.
    function _storedCommittee(RoundState storage rs, uint256 k) private view returns (Committee memory c) {
        uint256 a = rs.authors.length;
        c.authors = a;
        c.size = k < a - 1 ? k : a - 1;
        c.seed = rs.seed;
        for (uint256 w = 0; w < (a + 31) / 32; ++w) {
            c.slotOf[w] = rs.slotOf[w];
        }
    }

    /// @dev The Fisher-Yates committee order of `a >= 1` authors from `seed`, returned
    /// inverted and packed: the slot of position `p` is byte `p % 32` of word `p / 32`.
    function _committeeSlots(bytes32 seed, uint256 a) private pure returns (uint256[8] memory slotOf) {
        uint256[] memory order = new uint256[](a);
        for (uint256 i = 0; i < a; ++i) {
            order[i] = i;
        }
        for (uint256 i = a - 1; i > 0; --i) {
            // Not a weak PRNG: `seed` hashes blockhash(sealBlock), a block after the
            // updates were fixed (see the contract NatSpec); the modulo bias is < 2^-247.
            // slither-disable-next-line weak-prng
            uint256 j = uint256(keccak256(abi.encode(seed, i))) % (i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        for (uint256 t = 0; t < a; ++t) {
            uint256 position = order[t];
            slotOf[position / 32] |= t << (8 * (position % 32));
        }
    }

    /// @dev The slot of anchoring position `position` in a packed slot table.
    function _slot(uint256[8] memory slotOf, uint256 position) private pure returns (uint256) {
        return (slotOf[position / 32] >> (8 * (position % 32))) & 0xff;
    }

    /// @dev Validate, verify and record one ballot: tally its Borda points (`m` = M), or
    /// under a median rule (`m` = 0) store its scores (rule 1) or ranks (rule 2) packed.
    function _castBallot(
        uint32 round,
        RoundState storage rs,
        Ballot calldata ballot,
        bytes32 domain,
        uint256 m,
        Committee memory committee
    ) private {
        address evaluator = ballot.evaluator;
        if (_indexPlusOne[evaluator] == 0) revert UnknownParticipant(evaluator);
        mapping(address => bytes32) storage ballotSlots = _anchors[round][KIND_BALLOT];
        if (ballotSlots[evaluator] != bytes32(0)) revert DuplicateBallot(round, evaluator);

        uint256[] memory keysOrWords = committee.authors == 0
            ? _readBallot(round, rs, ballot, m == 0)
            : _readCommitteeBallot(round, rs, ballot, m == 0, committee);

        bytes32 digest = _ballotDigest(domain, round, evaluator, ballot.peers, ballot.scores);
        address recovered = _recover(digest, ballot.signature);
        if (recovered != evaluator) revert InvalidSignature(evaluator, recovered);

        ballotSlots[evaluator] = digest;
        uint256 ballotIndex = rs.evaluators.length;
        rs.evaluators.push(evaluator);
        if (m == 0) {
            // committee runs: the ballot's words are stored by the evaluator's slot
            _storeScores(
                rs,
                keysOrWords,
                committee.authors == 0 ? ballotIndex : _slot(committee.slotOf, rs.info[evaluator].position),
                ballot.peers.length
            );
        } else {
            _tally(rs, ballot.peers, keysOrWords, m);
        }
        emit BallotCast(round, evaluator, digest);
    }

    /// @dev Check the peers and scores of a ballot. Borda (`packed` false): return one
    /// unique sort key per peer (`_sortKey`), so that a larger key means a better rank
    /// (higher score, then the round's tie order). Median (`packed` true): return the
    /// ballot's scores packed by author position (see `RoundState.packedScores`).
    function _readBallot(uint32 round, RoundState storage rs, Ballot calldata ballot, bool packed)
        private
        view
        returns (uint256[] memory out)
    {
        address evaluator = ballot.evaluator;
        address[] calldata peers = ballot.peers;
        uint32[] calldata scores = ballot.scores;
        uint256 k = peers.length;
        if (k != scores.length) revert LengthMismatch(k, scores.length);
        out = new uint256[](packed ? _wordsPerBallot(rs.authors.length) : k);
        bytes32 seed = rs.seed;
        uint256 seen = 0; // bitmap of participant indices, n <= 256
        for (uint256 i = 0; i < k; ++i) {
            address peer = peers[i];
            if (peer == evaluator) revert SelfScore(evaluator);
            AuthorInfo storage info = rs.info[peer];
            if (!info.isAuthor) revert NotAnAuthor(round, peer);
            uint256 index = info.index;
            uint256 bit = uint256(1) << index;
            if (seen & bit != 0) revert DuplicatePeer(peer);
            seen |= bit;
            uint32 score = scores[i];
            if (score > MAX_SCORE) revert ScoreOutOfRange(score);
            if (packed) {
                _pack(out, info.position, score);
            } else {
                out[i] = _sortKey(score, seed, peer, i);
            }
        }
        uint256 expected = rs.authors.length - (rs.info[evaluator].isAuthor ? 1 : 0);
        if (k != expected) revert IncompleteBallot(round, evaluator, k, expected);
    }

    /// @dev `_readBallot` of a committee run: the evaluator is an author, every peer is
    /// one of its assigned peers, once, and all `k_eff` are there. Median (`packed`):
    /// the score of the peer at slot offset `j` goes to entry `j - 1`.
    function _readCommitteeBallot(
        uint32 round,
        RoundState storage rs,
        Ballot calldata ballot,
        bool packed,
        Committee memory c
    ) private view returns (uint256[] memory out) {
        address[] calldata peers = ballot.peers;
        uint256 k = peers.length;
        if (k != ballot.scores.length) revert LengthMismatch(k, ballot.scores.length);
        address evaluator = ballot.evaluator;
        AuthorInfo storage evaluatorInfo = rs.info[evaluator];
        if (!evaluatorInfo.isAuthor) revert NotAnAuthor(round, evaluator);
        c.evaluatorSlot = _slot(c.slotOf, evaluatorInfo.position);
        out = new uint256[](packed ? _wordsPerBallot(c.size) : k);
        _readAssignedPeers(round, rs, evaluator, peers, ballot.scores, packed, c, out);
        if (k != c.size) revert IncompleteBallot(round, evaluator, k, c.size);
    }

    /// @dev The peer loop of `_readCommitteeBallot` (sort keys or packed scores into `out`).
    function _readAssignedPeers(
        uint32 round,
        RoundState storage rs,
        address evaluator,
        address[] calldata peers,
        uint32[] calldata scores,
        bool packed,
        Committee memory c,
        uint256[] memory out
    ) private view {
        uint256 seen = 0; // bitmap of slot offsets, < 256
        for (uint256 i = 0; i < peers.length; ++i) {
            address peer = peers[i];
            if (peer == evaluator) revert SelfScore(evaluator);
            AuthorInfo storage info = rs.info[peer];
            if (!info.isAuthor) revert NotAnAuthor(round, peer);
            uint256 offset = (_slot(c.slotOf, info.position) + c.authors - c.evaluatorSlot) % c.authors;
            if (offset > c.size) revert NotAssigned(round, evaluator, peer);
            if ((seen >> offset) & 1 != 0) revert DuplicatePeer(peer);
            seen |= uint256(1) << offset;
            uint32 score = scores[i];
            if (score > MAX_SCORE) revert ScoreOutOfRange(score);
            if (packed) {
                _pack(out, offset - 1, score);
            } else {
                out[i] = _sortKey(score, c.seed, peer, i);
            }
        }
    }

    /// @dev Put `score + 1` into the 32 bits of author `position` of a packed ballot.
    function _pack(uint256[] memory words, uint256 position, uint32 score) private pure {
        words[position / SCORES_PER_WORD] |= (uint256(score) + 1) << (32 * (position % SCORES_PER_WORD));
    }

    /// @dev Store the packed words of ballot number `ballotIndex` (median rules): its
    /// `k` scores (rule 1), or their ranks (rule 2, `_rankPacked`).
    function _storeScores(RoundState storage rs, uint256[] memory words, uint256 ballotIndex, uint256 k)
        private
    {
        if (_params.electionRule == RULE_MEDIAN_RANK) _rankPacked(words, k);
        uint256 first = ballotIndex * words.length;
        for (uint256 w = 0; w < words.length; ++w) {
            if (words[w] != 0) rs.packedScores[first + w] = words[w];
        }
    }

    /// @dev Rule 2: replace the `k` scores of a packed ballot by their ranks within it,
    /// scaled to `[0, MAX_SCORE]` (`k` = the ballot's peers, as many as its non-empty
    /// lanes): `floor((2 * #lower + #equal - 1) * MAX_SCORE / (2 * (k - 1)))`,
    /// `MAX_SCORE / 2` for a ballot of one
    /// (`seccl_flwr.protocol.election.ballot_ranks`). A heapsort of `score << 8 | lane`,
    /// then one pass over the runs of equal scores: O(k log k).
    function _rankPacked(uint256[] memory words, uint256 k) private pure {
        uint256[] memory keys = new uint256[](k);
        uint256 next = 0;
        for (uint256 w = 0; w < words.length; ++w) {
            uint256 word = words[w];
            words[w] = 0;
            for (uint256 lane = 0; word != 0; ++lane) {
                uint256 value = word & 0xffffffff;
                if (value != 0) {
                    keys[next] = (value << 8) | (w * SCORES_PER_WORD + lane); // lane < 256
                    ++next;
                }
                word >>= 32;
            }
        }
        if (k < 2) {
            if (k == 1) _pack(words, keys[0] & 0xff, MAX_SCORE / 2);
            return;
        }
        _selectTop(keys, k); // a full heapsort: ascending
        uint256 span = 2 * (k - 1);
        uint256 lower = 0;
        while (lower < k) {
            uint256 value = keys[lower] >> 8;
            uint256 upper = lower + 1;
            while (upper < k && keys[upper] >> 8 == value) ++upper;
            uint32 rank = uint32(((lower + upper - 1) * MAX_SCORE) / span);
            for (uint256 j = lower; j < upper; ++j) {
                _pack(words, keys[j] & 0xff, rank);
            }
            lower = upper;
        }
    }

    /// @dev Give the top `min(m, k)` keys `m, m-1, ...` points (partial heapsort).
    function _tally(RoundState storage rs, address[] calldata peers, uint256[] memory keys, uint256 m)
        private
    {
        uint256 k = keys.length;
        uint256 top = m < k ? m : k;
        _selectTop(keys, top);
        for (uint256 p = 0; p < top; ++p) {
            rs.info[peers[keys[k - 1 - p] & 0xff]].points += uint32(m - p);
        }
    }

    // ------------------------------------------------------------------- election

    /// @notice Elect the candidates of the current round from the ballots submitted so far
    /// (truncated Borda; a median-rule run elects with `electByMedian`).
    /// @dev Needs at least `quorum` ballots (`QuorumNotReached`). Ranks the round's
    /// update authors by total points (ties in the round's tie order) and stores the
    /// first `min(M, #authors)`. Cost O(#authors * log(#authors)).
    /// Committee runs rank by the normalised standing `floor(points * 1e6 / received)`
    /// (0 if the author received no ballot), where `received` is the number of its
    /// assigned evaluators that cast a ballot; `totalsOf` reports it from here on
    /// (the raw points before). Counting `received` costs O(#ballots + #authors): a
    /// bitmap of the slots that voted, slid over each author's `k_eff` evaluator slots.
    /// @param round The current round.
    function elect(uint32 round) external onlyOwner whenOpen {
        (RoundState storage rs, Params memory runParams) = _electable(round, RULE_TRUNCATED_BORDA);
        if (runParams.committeeSize != 0) {
            _normaliseBorda(rs, _storedCommittee(rs, runParams.committeeSize));
        }
        _elect(round, rs, runParams.numCandidates);
    }

    /// @dev Replace every author's Borda points by `floor(points * 1e6 / received)`.
    function _normaliseBorda(RoundState storage rs, Committee memory c) private {
        uint256 a = c.authors;
        uint256 voted = 0; // bitmap of the slots that cast a ballot
        uint256 ballots = rs.evaluators.length;
        for (uint256 b = 0; b < ballots; ++b) {
            voted |= uint256(1) << _slot(c.slotOf, rs.info[rs.evaluators[b]].position);
        }
        // received[u]: voted slots among u-1, ..., u-k_eff (mod a)
        uint256[] memory received = new uint256[](a);
        uint256 count = 0;
        for (uint256 j = 1; j < c.size + 1; ++j) {
            count += (voted >> (a - j)) & 1;
        }
        received[0] = count;
        for (uint256 u = 1; u < a; ++u) {
            count = count + ((voted >> (u - 1)) & 1) - ((voted >> ((u - 1 + a - c.size) % a)) & 1);
            received[u] = count;
        }
        for (uint256 position = 0; position < a; ++position) {
            AuthorInfo storage info = rs.info[rs.authors[position]];
            uint256 r = received[_slot(c.slotOf, position)];
            info.points = r == 0 ? 0 : uint32((uint256(info.points) * PPM) / r);
        }
    }

    /// @notice Elect the candidates of the current round under a median rule, given
    /// every author's median received score (rule 1) or rank (rule 2, the scaled ranks
    /// `submitBallots` stored in place of the scores), which the contract verifies.
    /// @dev `medians[i]` must be the lower median of the scores `updateAuthors(round)[i]`
    /// received (the `ceil(k/2)`-th smallest of its `k` scores, 0 if none): with
    /// `t = (k-1)/2`, fewer than `t + 1` scores below it and more than `t` at or below
    /// it, which only the true median satisfies (`WrongMedian` otherwise). Checking a
    /// median is O(k), where selecting it would be O(k log k); anyone can compute them
    /// from the ballots (`seccl_flwr.protocol.election`). Then ranks the authors by
    /// median (ties in the round's tie order) as `elect` does. Cost O(#ballots *
    /// #authors) plus the ranking. Committee runs: an author's scores are those of its
    /// `k_eff` assigned evaluators that voted; the contract reads `#authors *
    /// ceil(k_eff / 8)` storage words (at most `MAX_MEDIAN_WORDS`, checked by `open`)
    /// and checks each median in O(k_eff): O(#authors * k_eff) in all.
    /// @param round The current round.
    /// @param medians The median received score of each update author, in anchoring order.
    function electByMedian(uint32 round, uint32[] calldata medians) external onlyOwner whenOpen {
        uint8 rule = _params.electionRule == RULE_MEDIAN_RANK ? RULE_MEDIAN_RANK : RULE_MEDIAN_SCORE;
        (RoundState storage rs, Params memory runParams) = _electable(round, rule);
        uint256 a = rs.authors.length;
        if (medians.length != a) revert LengthMismatch(medians.length, a);
        if (runParams.committeeSize != 0) {
            _checkCommitteeMedians(round, rs, medians, _storedCommittee(rs, runParams.committeeSize));
            _elect(round, rs, runParams.numCandidates);
            return;
        }
        uint256 ballots = rs.evaluators.length;
        uint256 perBallot = _wordsPerBallot(a);
        uint256[] memory words = new uint256[](ballots * perBallot);
        for (uint256 i = 0; i < words.length; ++i) {
            words[i] = rs.packedScores[i];
        }
        for (uint256 position = 0; position < a; ++position) {
            address author = rs.authors[position];
            uint32 claimed = medians[position];
            if (!_isLowerMedian(words, perBallot, ballots, position, claimed)) {
                revert WrongMedian(round, author, claimed);
            }
            rs.info[author].points = claimed;
        }
        _elect(round, rs, runParams.numCandidates);
    }

    /// @dev The checks shared by `elect` and `electByMedian`; returns the round's state
    /// and the run's parameters.
    function _electable(uint32 round, uint8 rule)
        private
        view
        returns (RoundState storage rs, Params memory runParams)
    {
        uint32 current = _lastCompletedRound + 1;
        if (round != current) revert WrongRound(round, current);
        runParams = _params;
        if (runParams.electionRule != rule) revert WrongElectionRule(runParams.electionRule, rule);
        rs = _rounds[round];
        if (rs.authors.length == 0) revert NoUpdates(round);
        if (rs.elected) revert AlreadyElected(round);
        uint256 ballots = rs.evaluators.length;
        if (ballots < runParams.quorum) revert QuorumNotReached(round, ballots, runParams.quorum);
    }

    /// @dev Rank the round's authors by `points` (ties in the tie order), store and emit
    /// the first `min(m, #authors)`.
    function _elect(uint32 round, RoundState storage rs, uint256 m) private {
        uint256 a = rs.authors.length;
        bytes32 seed = rs.seed;
        uint256[] memory keys = new uint256[](a);
        for (uint256 i = 0; i < a; ++i) {
            address author = rs.authors[i];
            keys[i] = _sortKey(rs.info[author].points, seed, author, i);
        }
        uint256 top = m < a ? m : a;
        address[] memory candidates = new address[](top);
        uint32[] memory totals = new uint32[](top);
        _selectTop(keys, top);
        for (uint256 p = 0; p < top; ++p) {
            uint256 best = keys[a - 1 - p];
            candidates[p] = rs.authors[best & 0xff];
            totals[p] = uint32((best >> 224) - 1);
        }
        rs.candidates = candidates;
        rs.elected = true;
        emit Elected(round, candidates, totals);
    }

    /// @dev `electByMedian`'s check and storage of the claimed medians in a committee run.
    function _checkCommitteeMedians(
        uint32 round,
        RoundState storage rs,
        uint32[] calldata medians,
        Committee memory c
    ) private {
        uint256 a = c.authors;
        uint256 perBallot = _wordsPerBallot(c.size);
        uint256[] memory words = new uint256[](a * perBallot);
        for (uint256 i = 0; i < words.length; ++i) {
            words[i] = rs.packedScores[i];
        }
        for (uint256 position = 0; position < a; ++position) {
            address author = rs.authors[position];
            uint32 claimed = medians[position];
            if (!_isCommitteeLowerMedian(words, perBallot, c, _slot(c.slotOf, position), claimed)) {
                revert WrongMedian(round, author, claimed);
            }
            rs.info[author].points = claimed;
        }
    }

    /// @dev Whether `claimed` is the lower median of the scores the author at slot `u`
    /// received from the evaluators at slots `u - j`, `1 <= j <= k_eff`, each stored in
    /// entry `j - 1` of that evaluator's words (0 if it received none). The loop runs
    /// `#authors * k_eff` times per election: its arithmetic is unchecked (every value
    /// is below 2^32, every index below `words.length = #authors * perBallot`).
    function _isCommitteeLowerMedian(
        uint256[] memory words,
        uint256 perBallot,
        Committee memory c,
        uint256 u,
        uint256 claimed
    ) private pure returns (bool) {
        uint256 k = 0;
        uint256 below = 0;
        uint256 atMost = 0;
        unchecked {
            uint256 t = u;
            for (uint256 e = 0; e < c.size; ++e) {
                t = t == 0 ? c.authors - 1 : t - 1; // the evaluator at slot u - (e + 1)
                // entry `e` of ballot `t`: bits 32 * (e % 8) of word t * perBallot + e / 8
                uint256 value = (words[t * perBallot + (e >> 3)] >> ((e & 7) << 5)) & 0xffffffff;
                if (value != 0) {
                    ++k;
                    if (value < claimed + 1) ++below;
                    if (value < claimed + 2) ++atMost;
                }
            }
        }
        if (k == 0) return claimed == 0;
        uint256 half = (k - 1) / 2;
        return below < half + 1 && atMost > half;
    }

    /// @dev Whether `claimed` is the lower median of the scores of author `position`
    /// in the packed ballots `words` (0 if it received none).
    function _isLowerMedian(
        uint256[] memory words,
        uint256 perBallot,
        uint256 ballots,
        uint256 position,
        uint256 claimed
    ) private pure returns (bool) {
        uint256 word = position / SCORES_PER_WORD;
        uint256 shift = 32 * (position % SCORES_PER_WORD);
        uint256 k = 0;
        uint256 below = 0;
        uint256 atMost = 0;
        // stored values are score + 1 (0: no score): below the claim is `< claimed + 1`,
        // at most the claim is `< claimed + 2`
        for (uint256 b = 0; b < ballots; ++b) {
            uint256 value = (words[b * perBallot + word] >> shift) & 0xffffffff;
            if (value != 0) {
                ++k;
                if (value < claimed + 1) ++below;
                if (value < claimed + 2) ++atMost;
            }
        }
        if (k == 0) return claimed == 0;
        uint256 t = (k - 1) / 2;
        return below < t + 1 && atMost > t;
    }

    /// @dev Storage words per ballot under the median rule.
    function _wordsPerBallot(uint256 authors) private pure returns (uint256) {
        return (authors + SCORES_PER_WORD - 1) / SCORES_PER_WORD;
    }

    // ---------------------------------------------------------------------- views

    /// @notice The server that deployed the run.
    /// @return The owner address.
    function owner() external view returns (address) {
        return _owner;
    }

    /// @notice The 32-byte run identifier.
    /// @return The run id.
    function runId() external view returns (bytes32) {
        return _runId;
    }

    /// @notice The run's parameters, fixed at deployment.
    /// @return The parameters (`numCandidates`, `quorum`, `shareFractionPpm`,
    /// `perTensor`, `electionRule`, `committeeSize`).
    function params() external view returns (Params memory) {
        return _params;
    }

    /// @notice Whether `open()` has sealed the roster (round functions need it).
    /// @return True once the run is open.
    function isOpen() external view returns (bool) {
        return _open;
    }

    /// @notice `keccak256(abi.encodePacked(participants()))`, fixed by `open()`.
    /// @return The roster digest; zero before the run is open.
    function rosterDigest() external view returns (bytes32) {
        return _rosterDigest;
    }

    /// @notice The block of the deployment: every event of the run is at or after it.
    /// @return The block number.
    function openingBlock() external view returns (uint256) {
        return _openingBlock;
    }

    /// @notice The seed of a round's tie order: the XOR of its anchored UPDATE digests
    /// (final from the round's first ballot on).
    /// @param round The round.
    /// @return The seed (zero before any update of the round).
    function roundSeed(uint32 round) external view returns (bytes32) {
        return _rounds[round].seed;
    }

    /// @notice The block in which `sealUpdates(round)` sealed the round's updates.
    /// @param round The round.
    /// @return The seal block; 0 if the round was not sealed with `sealUpdates`.
    function sealBlockOf(uint32 round) external view returns (uint256) {
        return _rounds[round].sealBlock;
    }

    /// @notice The committee seed of a round of a committee run:
    /// `keccak256(abi.encode(blockhash(sealBlockOf(round)), roundSeed(round)))`.
    /// @param round The round.
    /// @return The seed; zero until the round's first ballot drew the committees.
    function committeeSeedOf(uint32 round) external view returns (bytes32) {
        return _rounds[round].committeeSeed;
    }

    /// @notice The committee slot of every update author of a round (committee runs):
    /// the author at slot `t` scores the authors at slots `t+1, ..., t+k_eff` (mod the
    /// number of authors).
    /// @param round The round.
    /// @return slots The slot of each author of `updateAuthors(round)`, in anchoring
    /// order; empty until the committees are drawn.
    function committeeSlotsOf(uint32 round) external view returns (uint256[] memory slots) {
        RoundState storage rs = _rounds[round];
        if (rs.committeeSeed == bytes32(0)) return slots;
        Committee memory c = _storedCommittee(rs, 1);
        slots = new uint256[](c.authors);
        for (uint256 position = 0; position < c.authors; ++position) {
            slots[position] = _slot(c.slotOf, position);
        }
    }

    /// @notice The participants in registration order.
    /// @return The participant addresses.
    function participants() external view returns (address[] memory) {
        return _participants;
    }

    /// @notice The registration index of a participant.
    /// @param account The participant address; reverts `UnknownParticipant` otherwise.
    /// @return Its index in `participants()`.
    function participantIndex(address account) external view returns (uint256) {
        uint256 indexPlusOne = _indexPlusOne[account];
        if (indexPlusOne == 0) revert UnknownParticipant(account);
        return indexPlusOne - 1;
    }

    /// @notice Whether an address is a participant of the run.
    /// @param account The address.
    /// @return True if registered.
    function isParticipant(address account) external view returns (bool) {
        return _indexPlusOne[account] != 0;
    }

    /// @notice The last round whose global model was anchored (0 before any).
    /// @return The last completed round.
    function lastCompletedRound() external view returns (uint32) {
        return _lastCompletedRound;
    }

    /// @notice The round currently in progress, `lastCompletedRound() + 1`.
    /// @return The current round.
    function currentRound() external view returns (uint32) {
        return _lastCompletedRound + 1;
    }

    /// @notice The anchored digest of `(round, kind, author)`; for kind 2 (BALLOT) the
    /// digest of the evaluator's ballot.
    /// @param round The round.
    /// @param kind The message kind.
    /// @param author The author (evaluator for ballots, owner for global models).
    /// @return The digest, or zero if none.
    function anchorOf(uint32 round, uint8 kind, address author) external view returns (bytes32) {
        return _anchors[round][kind][author];
    }

    /// @notice The authors of the round's anchored updates, in anchoring order.
    /// @param round The round.
    /// @return The update authors.
    function updateAuthors(uint32 round) external view returns (address[] memory) {
        return _rounds[round].authors;
    }

    /// @notice Whether the round has been elected.
    /// @param round The round.
    /// @return True once `elect(round)` succeeded.
    function isElected(uint32 round) external view returns (bool) {
        return _rounds[round].elected;
    }

    /// @notice The elected candidates of a round, best first; reverts `NotElected`.
    /// @param round The round.
    /// @return The candidates.
    function candidatesOf(uint32 round) external view returns (address[] memory) {
        RoundState storage rs = _rounds[round];
        if (!rs.elected) revert NotElected(round);
        return rs.candidates;
    }

    /// @notice The standings of all update authors of a round: Borda totals (so far;
    /// in a committee run the normalised standings from `elect` on), or median scores
    /// (from `elect` on; zero before).
    /// @param round The round.
    /// @return authors The update authors in anchoring order.
    /// @return points Their standings.
    function totalsOf(uint32 round)
        external
        view
        returns (address[] memory authors, uint32[] memory points)
    {
        RoundState storage rs = _rounds[round];
        authors = rs.authors;
        points = new uint32[](authors.length);
        for (uint256 i = 0; i < authors.length; ++i) {
            points[i] = rs.info[authors[i]].points;
        }
    }

    /// @notice The number of ballots accepted in a round.
    /// @param round The round.
    /// @return The ballot count.
    function ballotCount(uint32 round) external view returns (uint256) {
        return _rounds[round].evaluators.length;
    }

    /// @notice The evaluators whose ballots were accepted, in submission order.
    /// @param round The round.
    /// @return The evaluators.
    function evaluatorsOf(uint32 round) external view returns (address[] memory) {
        return _rounds[round].evaluators;
    }

    /// @notice The EIP-712 domain separator ("SecCL", "1", block.chainid, this contract).
    /// @return The domain separator, computed at call time.
    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid, address(this)));
    }

    /// @notice The EIP-712 domain separator of join signatures ("SecCL", "1", block.chainid),
    /// without `verifyingContract`.
    /// @return The join domain separator, computed at call time.
    function joinDomainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(_JOIN_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid));
    }

    /// @notice The EIP-712 digest of `Join(runId, participant)` (what a participant signs).
    /// @param participant The participant.
    /// @return The digest `keccak256(0x1901 || joinDomainSeparator || structHash)`.
    function hashJoin(address participant) external view returns (bytes32) {
        return _typedDigest(joinDomainSeparator(), keccak256(abi.encode(_JOIN_TYPEHASH, _runId, participant)));
    }

    /// @notice The EIP-712 digest of a `Message` of this run.
    /// @param round The round.
    /// @param kind The message kind.
    /// @param author The author.
    /// @param payloadHash keccak-256 of the canonical payload bytes.
    /// @return The digest `keccak256(0x1901 || domainSeparator || structHash)`.
    function hashMessage(uint32 round, uint8 kind, address author, bytes32 payloadHash)
        external
        view
        returns (bytes32)
    {
        bytes32 structHash = keccak256(abi.encode(_MESSAGE_TYPEHASH, _runId, round, kind, author, payloadHash));
        return _typedDigest(domainSeparator(), structHash);
    }

    /// @notice The EIP-712 digest of a `Ballot` of this run (what the evaluator signs).
    /// @param round The round.
    /// @param evaluator The evaluator.
    /// @param peers The scored peers.
    /// @param scores The scores.
    /// @return The digest `keccak256(0x1901 || domainSeparator || structHash)`.
    function hashBallot(uint32 round, address evaluator, address[] calldata peers, uint32[] calldata scores)
        external
        view
        returns (bytes32)
    {
        return _ballotDigest(domainSeparator(), round, evaluator, peers, scores);
    }

    // ------------------------------------------------------------------ internals

    function _ballotDigest(
        bytes32 domain,
        uint32 round,
        address evaluator,
        address[] calldata peers,
        uint32[] calldata scores
    ) private view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(
                _BALLOT_TYPEHASH,
                _runId,
                round,
                evaluator,
                keccak256(abi.encodePacked(peers)),
                keccak256(abi.encodePacked(scores))
            )
        );
        return _typedDigest(domain, structHash);
    }

    /// @dev Partial heapsort: moves the `top` largest keys to the end of `keys`, the
    /// largest last (`keys[len - 1 - p]` is the `p`-th best). O(len + top * log(len)):
    /// a max-heap is built in place, then its root is swapped out `top` times.
    function _selectTop(uint256[] memory keys, uint256 top) private pure {
        uint256 len = keys.length;
        for (uint256 i = len / 2; i > 0; --i) {
            _siftDown(keys, i - 1, len);
        }
        for (uint256 end = len; end > len - top; --end) {
            uint256 largest = keys[0];
            keys[0] = keys[end - 1];
            keys[end - 1] = largest;
            _siftDown(keys, 0, end - 1);
        }
    }

    /// @dev Restore the max-heap property of `keys[0:end]` below `root`.
    function _siftDown(uint256[] memory keys, uint256 root, uint256 end) private pure {
        uint256 value = keys[root];
        uint256 child = 2 * root + 1;
        while (child < end) {
            uint256 larger = keys[child];
            if (child + 1 < end && keys[child + 1] > larger) {
                ++child;
                larger = keys[child];
            }
            if (larger < value) break;
            keys[root] = larger;
            root = child;
            child = 2 * root + 1;
        }
        keys[root] = value;
    }

    /// @dev The selection key of a participant: `(value + 1) << 224`, then the top 216
    /// bits of `~keccak256(abi.encode(seed, account))` (a lower hash gives a larger key),
    /// then the position `< 256` in the low byte, which makes keys unique and non-zero.
    function _sortKey(uint256 value, bytes32 seed, address account, uint256 position)
        private
        pure
        returns (uint256)
    {
        uint256 tie = uint256(keccak256(abi.encode(seed, account)));
        return ((value + 1) << 224) | ((~tie >> 40) << 8) | position;
    }

    function _typedDigest(bytes32 domain, bytes32 structHash) private pure returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", domain, structHash));
    }

    /// @dev ecrecover of a 65-byte `r || s || v` signature; 0 if malformed or high-s.
    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) return address(0);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > _HALF_ORDER) return address(0);
        if (v != 27 && v != 28) return address(0);
        return ecrecover(digest, v, r, s);
    }
}
