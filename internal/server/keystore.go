package server

// This file holds the key store in the server: the database pool, the
// schema migrated in the background, the mirror every check reads, usage
// flushed in batches, and the key-management API's listener.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/credits"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

// keyStore is the server's part of a policy's keys_store.
type keyStore struct {
	pool   *pgxpool.Pool
	store  *store.Store
	mirror *store.Mirror
	usage  *store.Usage
	ledger *credits.Ledger // this replica's holds of the wallets
	// settled is closed once the first snapshot is in and what loading it
	// left behind is given back to the OS: the replica is ready then.
	settled chan struct{}
	api     *http.Server // nil without --keys-api-addr
	apiLis  net.Listener
}

// openKeyStore connects to the database the policy names (lazily: a
// database down at start is retried, and the replica is not ready until
// its keys are in).
func (s *Server) openKeyStore(snap *policy.Snapshot) (*keyStore, error) {
	ks := snap.KeyStore()
	if ks == nil {
		if s.cfg.KeysAPIAddr != "" {
			return nil, fmt.Errorf("--keys-api-addr: the policy has no keys_store")
		}
		return nil, nil
	}
	dsn := os.Getenv(ks.DSNEnv)
	if dsn == "" {
		return nil, fmt.Errorf("keys_store: $%s is empty: set it to the PostgreSQL DSN (never write the DSN in the policy)", ks.DSNEnv)
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("keys_store: $%s is not a PostgreSQL DSN: %w", ks.DSNEnv, err)
	}
	// A connection is pinged before each use: one the database dropped (a
	// restart, a killed backend) is replaced instead of failing a call.
	pcfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return true }
	// Connections kept open, so a check that must take credit units does
	// not wait for one to be made (its Envoy gives it 250 ms in all).
	if !strings.Contains(dsn, "pool_min_conns") {
		pcfg.MinConns = 2
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, fmt.Errorf("keys_store: %w", err)
	}
	feed, err := pgx.ParseConfig(dsn)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("keys_store: %w", err)
	}
	k := &keyStore{pool: pool, store: store.New(pool), usage: store.NewUsage(pool),
		mirror: store.NewMirror(feed, store.MirrorOptions{Log: s.log}), settled: make(chan struct{})}
	k.ledger = credits.NewLedger(k.store, replicaName(), credits.Options{Recheck: 500 * time.Millisecond})
	s.metrics.WatchKeyStore(k.mirror)
	s.metrics.WatchLedger(k.ledger)
	return k, nil
}

// keysAPI builds the key-management API's server (with the gRPC
// listener's TLS, if any) and opens its listener.
func (s *Server) keysAPI(k *keyStore) error {
	if k == nil || s.cfg.KeysAPIAddr == "" {
		return nil
	}
	h := api.New(api.Config{Store: k.store, Mirror: k.mirror, Usage: k.usage, Policy: s.engine.Snapshot, Log: s.log,
		Secure: s.cfg.TLSCert != ""})
	k.api = s.httpServer(h)
	k.api.TLSConfig = s.tls
	lis, err := net.Listen("tcp", s.cfg.KeysAPIAddr)
	if err != nil {
		return fmt.Errorf("keys API listener: %w", err)
	}
	k.apiLis = lis
	return nil
}

// run migrates the schema (unless --no-migrate), retrying while the
// database is down, then follows it; usage is flushed every UsageFlush and
// deleted keys are pruned daily.
func (k *keyStore) run(ctx context.Context, s *Server) {
	for !s.cfg.NoMigrate {
		if _, err := store.Migrate(ctx, k.pool); err == nil || ctx.Err() != nil {
			break
		} else {
			s.log.Warn("key store schema not migrated yet; retrying", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	go k.mirror.Run(ctx)
	go func() {
		// The first snapshot of a large store leaves its parsing's garbage
		// behind (rows, maps per key): give it back before the replica
		// says it is ready, as a keys file's load does, so that resident
		// memory reflects the tables from the first check on.
		select {
		case <-k.mirror.LoadedC():
			releaseLoadGarbage()
			close(k.settled)
		case <-ctx.Done():
		}
	}()
	go k.ledger.Run(ctx, func(err error) {
		s.log.Warn("credits not settled; kept for the next settlement", "error", err.Error())
	})
	flush := time.NewTicker(s.cfg.UsageFlush)
	defer flush.Stop()
	wallets := time.NewTicker(walletsEvery)
	defer wallets.Stop()
	prune := time.NewTicker(24 * time.Hour)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-flush.C:
			if n, err := k.usage.Flush(ctx, now); err != nil {
				s.log.Warn("key usage not flushed; kept for the next flush", "error", err.Error())
			} else if n > 0 {
				s.log.Debug("key usage flushed", "counts", n)
			}
		case now := <-wallets.C:
			k.walletJobs(ctx, s, now)
		case now := <-prune.C:
			if n, err := k.store.Prune(ctx, now.Add(-keyRetention)); err != nil {
				s.log.Warn("deleted keys not pruned", "error", err.Error())
			} else if n > 0 {
				s.log.Info("deleted keys pruned", "keys", n)
			}
		}
	}
}

// keyRetention is how long a deleted key is kept (for limits and audit).
const keyRetention = 30 * 24 * time.Hour

// walletsEvery is how often each replica refills the wallets due (so a
// refill applies within a second of its time) and drops the holds of
// replicas gone (holdLease after their last renewal, so within 30 s of a
// replica's death). Any replica may do either: each is one transaction
// that does each thing once, and a cheap read when there is nothing to do.
const (
	walletsEvery = time.Second
	holdLease    = 25 * time.Second
)

func (k *keyStore) walletJobs(ctx context.Context, s *Server, now time.Time) {
	if n, err := k.store.RefillDue(ctx, now); err != nil {
		s.log.Warn("wallets not refilled; retrying", "error", err.Error())
	} else if n > 0 {
		s.log.Info("wallets refilled", "wallets", n)
	}
	if n, err := k.store.ChargeStale(ctx, holdLease); err != nil {
		s.log.Warn("stale credit holds not dropped; retrying", "error", err.Error())
	} else if n > 0 {
		s.log.Warn("credit holds of a replica gone dropped: counted forfeited, since it may have admitted them", "units", n)
	}
}

// replicaName names this process among the replicas holding credits: the
// host name and a random suffix (a restarted replica is another).
func replicaName() string {
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// close returns every credit unit held, flushes what usage is left and
// closes the pool.
func (k *keyStore) close(log interface{ Warn(string, ...any) }) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	k.ledger.Close()
	if err := k.ledger.Settle(ctx, true); err != nil {
		log.Warn("credits held not returned at shutdown: they are counted forfeited after the lease", "error", err.Error())
	}
	if _, err := k.usage.Flush(ctx, time.Now()); err != nil {
		log.Warn("key usage lost at shutdown", "error", err.Error())
	}
	k.pool.Close()
}

var _ telemetry.Recorder = (*store.Usage)(nil)

// isSettled reports whether the first snapshot is in and its load's
// garbage given back.
func (k *keyStore) isSettled() bool {
	select {
	case <-k.settled:
		return true
	default:
		return false
	}
}
