/*
 * realm-invalidation.pml: the acknowledged-invalidation protocol of realm-operator as a Promela
 * model for Spin (docs/protocol-model.md says what is modelled, how, and how to run it).
 *
 * Written from the code: src/listener/realm-listener.ts + replica-registry.ts (register, lease,
 * heartbeat, fence, the epoch hint, acks), src/dataplane/{publish.ts, ack-waiter.ts,
 * ack-status.ts, invalidation.ts} and issue 13's fixes:
 *   1. the replica fences at sent + lease - MARGIN, the operator counts a replica live until
 *      lease_expires_at + GRACE (both by their own clocks);
 *   2. the publish transaction refuses a generation not newer than the one recorded (checked
 *      under the realm lock, before the link is swapped) and a leader stops when it sees it lost
 *      the lease;
 *   3. RealmListener.stop() stops trusting its cache before it deregisters;
 *   4. recovery's re-point commits its epoch bump and NOTIFY in a transaction of its own, and
 *      versions it did not commit are trashed only after that commit (a crash in between leaves
 *      them, and the next recovery bumps again).
 *
 * Each mutant is one -D flag (hack/model.sh runs them and fails unless each one fails):
 *   NO_MARGIN             fix 1 undone: no margin, no grace, with DB clock steps and paused replicas
 *   ACK_BEFORE_DROP       a replica records its ack before it drops its cache
 *   DEREG_BEFORE_UNTRUST  fix 3 undone: stop() deregisters while the cache is still trusted
 *   NO_GEN_FENCE          fix 2 undone: a paused leader's publish commits an older generation
 *   RECOVERY_IN_TX        fix 4 undone: the re-point's bump and NOTIFY live in the publish transaction
 *   ACK_ANY_EPOCH         the waiter counts an ack NOTIFY whatever epoch it carries
 *   HINT_ACK_NO_DROP      a replica acks the epoch hint and leaves the dropping to the wildcard
 *   FENCE_AT_COMMIT       fix 2 checked at COMMIT, after the swap: the refused version stays linked
 *   BUMP_ONLY_ON_LINK     recovery bumps the epoch only when the link disagrees with the database,
 *                         so a crash between its re-point and its COMMIT loses the invalidation
 *
 * Mutants of the completion proofs (docs/protocol.md §5), one -D flag each, checked by
 * test/integration/protocol-model.test.ts in the slice named (each must fail):
 *   PROOF_ANY_EPOCH  leaders  a completion proof completes a wait whatever epoch it proves (a stale
 *                             proof, heard for an earlier publish, completes the next one's wait)
 *   PROOF_NO_GRACE   clocks   the waiter takes a proof's "complete" on the announcer's word:
 *                             liveness without the operator's grace (a replica lapsed for the
 *                             replicas but still within the grace is not waited for)
 *
 * Bounds (-D to change; hack/model.sh's full mode raises them):
 *   CRASHES   operator crashes (at any step)          REFUSALS  publish re-checks that refuse (stall)
 *   LOSSES    replica connection losses               STOPS     graceful replica stops (replica 0)
 *   SKEW      DB clock steps forward (ticks)          LAG       ticks a replica's clock may stand still (pause)
 *   HANDOVERS leader lease handovers                  MAXGEN    last spec generation (gen 1 is published at start)
 *   NOTIME    no clock at all: leases never lapse, no heartbeats (the slices that explore failures)
 *   START_READY  replicas start registered and resynced (their start-up is explored elsewhere)
 *   TIMED     how many replicas (from 0) have a lease that runs by the clock (default all);
 *             the others never lapse
 */

#define NREP 2            /* the properties below name replicas 0 and 1 */
#define NOP 2
#ifndef MAXGEN
#define MAXGEN 3
#endif
#ifndef CRASHES
#define CRASHES 1
#endif
#ifndef REFUSALS
#define REFUSALS 1
#endif
#ifndef LOSSES
#define LOSSES 1
#endif
#ifndef STOPS
#define STOPS 1
#endif
#ifndef HANDOVERS
#define HANDOVERS 1
#endif

/* Time, in abstract ticks. The lease is LEASE ticks; the replica trusts its cache for
   LEASE - MARGIN ticks after it SENT the renewal; the operator waits for a replica until GRACE ticks
   past lease_expires_at. Safe when MARGIN + GRACE >= SKEW + LAG (docs/protocol-model.md). */
#ifndef LEASE
#define LEASE 2
#endif
#ifdef NO_MARGIN
#define MARGIN 0
#define GRACE 0
#ifndef SKEW
#define SKEW 1
#endif
#ifndef LAG
#define LAG 1
#endif
#else
#ifndef MARGIN
#define MARGIN 1
#endif
#ifndef GRACE
#define GRACE 1
#endif
#ifndef SKEW
#define SKEW 1
#endif
#ifndef LAG
#define LAG 1
#endif
#endif

#ifndef TIMED
#define TIMED NREP      /* replicas 0 .. TIMED-1 have leases that run by the clock */
#endif
#define MAXC 8          /* content ids 1..MAXC-1 (one per swapped-in version) */
#define NONE 255
#define QCAP 10

/* ---------------------------------------------------------------- the published realm, on disk */
byte link = 1;                  /* the version _published/<disk_id> points at (readers see this) */
byte strays = 0;                /* bit c: version directory c is installed but not committed */
byte contents = 1;              /* last content id handed out */

/* ---------------------------------------------------------------- PostgreSQL */
byte seq = 1;                   /* realm_operator.epoch_seq (nextval is not transactional) */
byte epoch = 1;                 /* realm_epochs.epoch (committed) */
byte committedContent = 1;      /* realm_epochs.content_version */
byte committedGen = 1;          /* the generation recorded with it (fix 2 compares against it) */
byte lockOwner = 0;             /* the realm's advisory lock: 0 free, else operator id + 1 */
/* realm_operator.replicas: the row exists, its lease in ticks left *including* the operator's
   grace (live to the DB while > GRACE, live to the operator while > 0), ack and cache start. */
bool registered[NREP];
byte dbLeft[NREP];
byte ackE[NREP];
byte cacheStarted[NREP];
/* NOTIFY: each replica connection's queue (hint = epoch, wildcard = 0). */
chan nq[NREP] = [QCAP] of { byte };
bool listening[NREP];
/* The operators' LISTEN on realm_operator_replica_acks: the highest epoch replica i's ack NOTIFY
   carried since operator o LISTENed (acks only move forward, so the highest is all that counts). */
byte notified[NOP * NREP];
bool ackListen[NOP];
/* Completion proofs heard (ack-waiter.ts heardComplete): the highest epoch for which a completion
   announcement's proof, read in a snapshot after the announcer's ack committed, showed every replica
   the operator counts live done, heard while operator o LISTENed. Kept across reconciles, as the
   process keeps it; a crash forgets it. */
byte proven[NOP];

/* ---------------------------------------------------------------- replicas */
#define DOWN 0
#define REGISTERING 1
#define RESYNCING 2
#define READY 3
#define STOPPING 4
#define STOPPED 5
byte st[NREP];
byte locLeft[NREP];             /* ticks of trust left by the replica's own clock (fence) */
byte pend[NREP];                /* a register/renewal in flight: its trust deadline, ticking from send */
byte cache[NREP];               /* content id cached (0: empty) */
bool prevHint[NREP];            /* the previous notification handled was an epoch hint */
#define trusted(i) (st[i] == READY && locLeft[i] > 0)

/* ---------------------------------------------------------------- Kubernetes and the operators */
byte specGen = 2;               /* the PublishedRealm's generation (gen 1 is published and Ready) */
byte statusGen = 1;             /* generation of the last Ready status write */
byte stalledGen = 0;            /* generation Stalled by a refusal */
byte leader = 0;                /* holder of the operator's leader Lease */
bool crashReq[NOP];
bool busy[NOP];

/* ---------------------------------------------------------------- ghosts for the properties */
byte commitIdx[MAXC];           /* order in which content ids committed (0: never) */
byte commits = 1;
byte readyIdx = 1;              /* commit index of the newest content a Ready vouched for */
byte readyGen = 1;              /* newest generation declared Ready */

/* budgets */
byte crashLeft = CRASHES, refuseLeft = REFUSALS, lossLeft = LOSSES, stopLeft = STOPS;
byte skewLeft = SKEW, handoverLeft = HANDOVERS;
byte lagLeft[NREP];

/* Deliver a committed transaction's NOTIFYs to every LISTENing replica connection. */
inline deliver(recoveryHint, publishHint) {
  for (k : 0 .. NREP - 1) {
    if
    :: listening[k] ->
       assert(nfull(nq[k]));
       if
       :: recoveryHint != 0 -> nq[k]!recoveryHint; nq[k]!0; nq[k]!publishHint   /* the recovery's hint and wildcard (fix 4 undone:
                                                     the same tx), then the publish's hint: PostgreSQL
                                                     folds the second, identical wildcard */
       :: else -> nq[k]!publishHint; nq[k]!0                 /* the epoch hint, then the wildcard */
       fi
    :: else -> skip
    fi
  }
  k = 0
}

inline teardown(i) {
  st[i] = DOWN; listening[i] = false; locLeft[i] = 0; pend[i] = NONE; prevHint[i] = false;
  do :: nempty(nq[i]) -> nq[i]?_ :: empty(nq[i]) -> break od
}

inline ackNotify(i, e) {
  for (k : 0 .. NOP - 1) {
    if :: ackListen[k] && notified[k * NREP + i] < e -> notified[k * NREP + i] = e :: else -> skip fi
  }
  k = 0
}

/* The announcement after an ack's COMMIT (writeAckThenAnnounce's last statement): if every replica
   the operator would count live is done with e, its NOTIFY carries the proof. The proof lists
   lapsed replicas with their lapse's age, so the waiter applies its own grace: live = dbLeft > 0
   here. Evaluated right after the ack, in the same step: a proof evaluated later is a table read
   made then, which the waiter's re-reads (allowed at any time) already cover; what the model adds
   is that a proof is remembered and counts for its epoch or any older one. Always heard here,
   though the code may not send it (the claim went to another announcement, the replica died
   first): hearing more proofs only enables more completions, and the waiter may always ignore one
   (its loop may re-read instead), so this covers every subset of them. */
#ifdef PROOF_NO_GRACE
#define provenLive(i) (registered[i] && dbLeft[i] > GRACE)
#else
#define provenLive(i) (registered[i] && dbLeft[i] > 0)
#endif
#define doneWith(i, e) (ackE[i] >= e || cacheStarted[i] >= e)
#define provesComplete(e) ((!provenLive(0) || doneWith(0, e)) && (!provenLive(1) || doneWith(1, e)))
inline announce(e) {
  if
  :: provesComplete(e) ->
     for (k : 0 .. NOP - 1) {
       if :: ackListen[k] && proven[k] < e -> proven[k] = e :: else -> skip fi
     }
     k = 0
  :: else -> skip
  fi
}

/* recordAck: the row (a foreign key to the replica row) and the NOTIFY only when, in a snapshot
   after its commit, no live replica was missing and the completion claim succeeded
   (replica-registry.ts writeAckThenAnnounce: ack, COMMIT, announcement in one round trip; a lone
   replica's lean writeAck NOTIFYs in the ack's own statement). Which acks NOTIFY depends on timing
   the model does not track, so any ack may or may not: safety must not rest on hearing them.
   The NOTIFY may carry a completion proof (announce). */
inline recordAck(i, e) {
  atomic {
    if
    :: registered[i] ->
       if :: ackE[i] < e -> ackE[i] = e :: else -> skip fi;
       if :: ackNotify(i, e) :: skip fi;
       announce(e)
    :: else -> teardown(i)     /* registration vanished: reconnect and re-register */
    fi
  }
}

proctype Replica(byte i) {
  byte m, e, k;
end:
  do
  :: atomic { st[i] == DOWN -> listening[i] = true; st[i] = REGISTERING; pend[i] = LEASE - MARGIN }
     /* LISTEN first, then register: the trust deadline counts from the moment it was sent */
  :: atomic { st[i] == REGISTERING && pend[i] != NONE ->
       registered[i] = true; dbLeft[i] = LEASE + GRACE; cacheStarted[i] = 0;
       locLeft[i] = pend[i]; pend[i] = NONE; st[i] = RESYNCING }
  :: st[i] == RESYNCING ->
       /* read the sequence position, then drop everything: every epoch <= e is covered */
       atomic { e = seq; cache[i] = 0 };
       atomic {
         if
         :: st[i] != RESYNCING -> skip        /* lost meanwhile */
         :: st[i] == RESYNCING && registered[i] && dbLeft[i] > GRACE ->
            if :: cacheStarted[i] < e -> cacheStarted[i] = e :: else -> skip fi;
            st[i] = READY

         :: else -> teardown(i)               /* lease expired during resync */
         fi;
         e = 0
       }
  :: atomic { st[i] == READY && nempty(nq[i]) -> nq[i]?m;
#if defined(ACK_BEFORE_DROP) || defined(HINT_ACK_NO_DROP)
       skip
#else
       cache[i] = 0                           /* drop before the ack */
#endif
     };
     if
     :: m != 0 ->                             /* the epoch hint: ack the hinted epoch, no read */
        recordAck(i, m);
#ifdef ACK_BEFORE_DROP
        cache[i] = 0;
#endif
        prevHint[i] = true
     :: m == 0 ->                             /* the wildcard right after its hint: drop again */
        cache[i] = 0;
        if
        :: prevHint[i] -> skip
        :: else -> atomic { e = epoch; cache[i] = 0 }; recordAck(i, e); e = 0  /* no hint: read first */
        fi;
        prevHint[i] = false
     fi;
     m = 0
#ifndef NOTIME
  :: atomic { i < TIMED && st[i] == READY && pend[i] == NONE -> pend[i] = LEASE - MARGIN }   /* heartbeat sent */
  :: atomic { st[i] == READY && pend[i] != NONE ->                            /* renewLease runs */
       if
       :: registered[i] && dbLeft[i] > GRACE -> dbLeft[i] = LEASE + GRACE; locLeft[i] = pend[i]; pend[i] = NONE
       :: else -> teardown(i)                 /* lease had expired in the database */
       fi }
  :: atomic { st[i] == READY && locLeft[i] == 0 -> teardown(i) }            /* the fence fires */
#endif
  :: atomic { (st[i] == READY || st[i] == REGISTERING || st[i] == RESYNCING) && lossLeft > 0 ->
       lossLeft--; teardown(i) }                                             /* connection lost */
  :: i == 0 && st[i] == READY && stopLeft > 0 ->                            /* RealmListener.stop() */
       stopLeft--;
#ifdef DEREG_BEFORE_UNTRUST
       atomic { registered[i] = false; ackE[i] = 0; cacheStarted[i] = 0 };
       st[i] = STOPPING;                      /* still serving from its cache until here */
#else
       st[i] = STOPPING;                      /* cacheTrusted is false from here on */
       atomic { registered[i] = false; ackE[i] = 0; cacheStarted[i] = 0 };
#endif
       atomic { teardown(i); st[i] = STOPPED };
       break
  od
}

inline resetLocals() {
  g = 0; e = 0; e1 = 0; c = 0; rowGen = 0; rowContent = 0; missing = 0; i = 0; k = 0;
  for (i : 0 .. NREP - 1) { notified[o * NREP + i] = 0 }
  i = 0
}

/* Operator o's reconcile of the one PublishedRealm, restarted from the top after a crash. */
proctype Operator(byte o) {
  byte g, e, e1, c, rowGen, rowContent, k, i;
  byte missing;
end:
  do
  :: atomic { leader == o && specGen > statusGen && specGen != stalledGen && !busy[o] ->
       busy[o] = true; g = specGen; e = 0; e1 = 0; c = 0 };
     {
       /* ensurePublished: read realm_epochs */
       atomic { rowGen = committedGen; rowContent = committedContent; e = epoch };
       if
       :: atomic { rowGen == g -> rowGen = 0 }; goto wait
       :: atomic { rowGen > g -> rowGen = 0 }; goto done   /* a newer generation is already published */
       :: atomic { rowGen < g -> rowGen = 0 }
       fi;
#ifndef RECOVERY_IN_TX
       /* recovery in its own transaction (fix 4) */
       atomic { lockOwner == 0 -> lockOwner = o + 1 };
       if
#ifdef BUMP_ONLY_ON_LINK
       :: link != committedContent ->          /* uncommitted versions are trashed without a bump */
#else
       :: link != committedContent || strays != 0 ->
#endif
          link = committedContent;            /* re-point (the file system: not transactional) */
          e1 = seq + 1; seq = e1;             /* bumpEpoch */
          atomic { epoch = e1; deliver(0, e1); e1 = 0; lockOwner = 0 };   /* COMMIT */
          strays = 0                          /* trash uncommitted versions only after the commit */
       :: else -> lockOwner = 0
       fi;
#endif
       /* the publish transaction; the leader checks its lease before it (the abort signal) */
       if :: leader != o -> goto done :: else -> skip fi;
       atomic { lockOwner == 0 -> lockOwner = o + 1 };
#ifdef RECOVERY_IN_TX
       if
       :: link != committedContent ->
          link = committedContent; strays = 0;     /* re-point and trash, inside the transaction */
          e1 = seq + 1; seq = e1                   /* bumpEpoch: tx-local until COMMIT */
       :: else -> skip
       fi;
#endif
       /* the re-checks under the lock may refuse (source gone, claim taken): Stalled */
       if
       :: atomic { refuseLeft > 0 -> refuseLeft--; stalledGen = g; lockOwner = 0; e1 = 0 }; goto done
       :: skip
       fi;
#if !defined(NO_GEN_FENCE) && !defined(FENCE_AT_COMMIT)
       /* fix 2, under the lock and before the swap: a generation not newer than the recorded one
          is never swapped in (checked after the swap, a refused publish leaves the link at it) */
       if
       :: committedGen >= g -> atomic { lockOwner = 0; e1 = 0 }; goto done
       :: else -> skip
       fi;
#endif
       atomic { contents++; c = contents; assert(c < MAXC); strays = strays | (1 << c) };
       link = c;                               /* install + swap */
       e = seq + 1; seq = e;                   /* recordPublishedEpoch */
#ifdef FENCE_AT_COMMIT
       if
       :: committedGen >= g -> atomic { lockOwner = 0; e1 = 0 }; goto done
       :: else -> skip
       fi;
#endif
       atomic {                                /* COMMIT: state, then NOTIFYs, then the lock */
         assert(g >= readyGen);                /* P2: no older generation commits after a newer Ready */
         committedContent = c; committedGen = g; epoch = e;
         commits++; commitIdx[c] = commits; strays = strays & ~(1 << c);
         deliver(e1, e); e1 = 0; lockOwner = 0;
         rowContent = c
       };
wait:
       /* waitForReplicaAcks: LISTEN first, then read; acks by NOTIFY, completion proofs (also
          those heard in earlier reconciles), re-reads (poll) otherwise. The code may skip the
          first read when its LISTEN was up since before the commit: not modelled, as it adds no way
          to complete (with no read, `missing` starts as every replica, and whatever empties that
          empties what a read leaves), and a proof heard between the commit and the wait is a read
          made then, which the first read here (at any time after the commit) covers. */
       atomic { ackListen[o] = true; for (i : 0 .. NREP - 1) { notified[o * NREP + i] = 0 }; i = 0 };
poll:
       atomic {
         missing = 0;
         for (i : 0 .. NREP - 1) {
           if
           :: registered[i] && dbLeft[i] > 0 && ackE[i] < e && cacheStarted[i] < e -> missing = missing | (1 << i)
           :: else -> skip
           fi
         }
         i = 0
       };
#ifdef ACK_ANY_EPOCH
#define countsFor(i) (notified[o * NREP + i] > 0)
#else
#define countsFor(i) (notified[o * NREP + i] >= e)
#endif
#ifdef PROOF_ANY_EPOCH
#define proofCounts (proven[o] > 0)
#else
#define proofCounts (proven[o] >= e)
#endif
       do
       :: missing == 0 -> break
       :: proofCounts -> break                                                 /* a completion proof */
       :: atomic { (missing & 1) && countsFor(0) -> missing = missing & ~1 }   /* an ack NOTIFY */
       :: atomic { (missing & 2) && countsFor(1) -> missing = missing & ~2 }
       :: missing != 0 -> goto poll
       od;
       atomic {                                /* Ready */
         if :: commitIdx[rowContent] > readyIdx -> readyIdx = commitIdx[rowContent] :: else -> skip fi;
         if :: g > readyGen -> readyGen = g :: else -> skip fi;
         if :: g > statusGen -> statusGen = g :: else -> skip fi
       };
done:
       atomic { ackListen[o] = false; busy[o] = false; resetLocals() }
     } unless {
       atomic { crashReq[o] ->                 /* crash: the transaction aborts, the lock is freed */
         crashReq[o] = false;
         if :: lockOwner == o + 1 -> lockOwner = 0 :: else -> skip fi;
         ackListen[o] = false; busy[o] = false; proven[o] = 0; resetLocals() }
     }
  od
}

inline lag(i) {
  lagLeft[i]--; locLeft[i]++;
  if :: pend[i] != NONE -> pend[i]++ :: else -> skip fi
}

inline prune(i) { registered[i] = false; ackE[i] = 0; cacheStarted[i] = 0 }

/* Everything that just happens: time, clock anomalies, failures, spec changes, readers. */
active proctype Env() {
  byte i;
end:
  do
#ifndef NOTIME
  :: atomic {                                  /* one tick of real time */
       for (i : 0 .. TIMED - 1) {
         if :: registered[i] && dbLeft[i] > 0 -> dbLeft[i]-- :: else -> skip fi;
         if :: locLeft[i] > 0 -> locLeft[i]-- :: else -> skip fi;
         if :: pend[i] != NONE && pend[i] > 0 -> pend[i]-- :: else -> skip fi
       }
       i = 0 }
  :: atomic { skewLeft > 0 -> skewLeft--;      /* the DB clock steps forward (or fails over ahead) */
       for (i : 0 .. TIMED - 1) { if :: registered[i] && dbLeft[i] > 0 -> dbLeft[i]-- :: else -> skip fi }
       i = 0 }
  :: atomic { lagLeft[0] > 0 && locLeft[0] > 0 -> lag(0) }    /* replica 0's clock stands still (pause, slow rate) */
  :: atomic { lagLeft[1] > 0 && locLeft[1] > 0 -> lag(1) }
  :: atomic { registered[0] && dbLeft[0] == 0 -> prune(0) }    /* pruneExpiredReplicas */
  :: atomic { registered[1] && dbLeft[1] == 0 -> prune(1) }
#endif
  :: atomic { trusted(0) && cache[0] == 0 -> cache[0] = link } /* a reader misses: reads the link, fills */
  :: atomic { trusted(1) && cache[1] == 0 -> cache[1] = link }
  :: atomic { specGen < MAXGEN -> specGen++ }
  :: atomic { handoverLeft > 0 -> handoverLeft--; leader = 1 - leader }
  :: atomic { crashLeft > 0 && (busy[0] || busy[1]) -> crashLeft--;
       if :: busy[0] -> crashReq[0] = true :: busy[1] -> crashReq[1] = true fi }
  od
}

/* P1: once Ready vouched for the content committed as commit #readyIdx, no replica that trusts its
   cache holds committed content older than it. Checked in every state (a read can come any time). */
#define stale(i) (trusted(i) && cache[i] != 0 && commitIdx[cache[i]] != 0 && commitIdx[cache[i]] < readyIdx)
/* P3: at rest (no reconcile running or due, every NOTIFY handled), a replica that trusts its
   cache holds what the link points at: nothing uncommitted or superseded stays cached. */
#define atRest (!busy[0] && !busy[1] && !(specGen > statusGen && specGen != stalledGen) && len(nq[0]) == 0 && len(nq[1]) == 0)
#define diverged(i) (trusted(i) && cache[i] != 0 && cache[i] != link)
/* P4: at rest, the link (what every reader of the disk sees) is the committed content. */
#define linkAstray (link != committedContent)

active proctype Monitor() {
end:
  atomic { (stale(0) || stale(1) || (atRest && (diverged(0) || diverged(1) || linkAstray))) ->
    assert(!(stale(0) || stale(1)));                                  /* P1 */
    assert(!(atRest && (diverged(0) || diverged(1))));                /* P3 */
    assert(!(atRest && linkAstray))                                   /* P4 */
  }
}

init {
  byte i;
  atomic {
    commitIdx[1] = 1;
    for (i : 0 .. NREP - 1) {
      pend[i] = NONE;
      if :: i < TIMED -> lagLeft[i] = LAG :: else -> skip fi;
#ifdef START_READY
      /* replicas already registered and resynced at position 1 (their start-up is explored by
         the slices without START_READY, and after every connection loss) */
      st[i] = READY; listening[i] = true; registered[i] = true; dbLeft[i] = LEASE + GRACE;
      locLeft[i] = LEASE - MARGIN; cacheStarted[i] = 1
#endif
    }
    i = 0;
    run Operator(0); run Operator(1);
    run Replica(0); run Replica(1)
  }
}
