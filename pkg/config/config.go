// Package config turns the environment into a Config. It owns the names, defaults and checks
// of every HOOKLINE_* setting; only a service's main calls Load, and components take their own
// small options structs built from the Config.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hookline/hookline/pkg/delivery"
)

// Config is every setting of every Hookline process. Fields a process does not use are ignored.
type Config struct {
	HTTPAddr    string // HOOKLINE_HTTP_ADDR: /metrics, /healthz, /readyz and, for ingress, the API
	DatabaseURL string // DATABASE_URL
	NATSURL     string // NATS_URL; empty in the all-in-one means the embedded server

	NATSListen     string // HOOKLINE_NATS_LISTEN: embedded server's client address
	NATSMonitor    string // HOOKLINE_NATS_MONITOR: embedded server's monitoring address
	NATSUser       string // HOOKLINE_NATS_USER: embedded server credentials (optional)
	NATSPassword   string // HOOKLINE_NATS_PASSWORD
	NATSSyncAlways bool   // HOOKLINE_NATS_SYNC=always: fsync every JetStream write
	StreamReplicas int    // HOOKLINE_STREAM_REPLICAS
	DataDir        string // HOOKLINE_DATA_DIR

	RetrySchedule       delivery.Schedule // HOOKLINE_RETRY_SCHEDULE
	EndpointConcurrency int               // HOOKLINE_ENDPOINT_CONCURRENCY
	ReceiverTimeout     time.Duration     // HOOKLINE_RECEIVER_TIMEOUT
	RetryAfterMax       time.Duration     // HOOKLINE_RETRY_AFTER_MAX
	DisableAfter        time.Duration     // HOOKLINE_DISABLE_AFTER
	ReconcileAfter      time.Duration     // HOOKLINE_RECONCILE_AFTER
	AllowPrivateTargets bool              // HOOKLINE_ALLOW_PRIVATE_TARGETS

	AdminAPIKey    string // HOOKLINE_ADMIN_API_KEY
	EncryptionKey  []byte // HOOKLINE_ENCRYPTION_KEY, 32 bytes once decoded
	MaxUploadBytes int64  // HOOKLINE_MAX_UPLOAD_BYTES
	MaxBodyBytes   int64  // HOOKLINE_MAX_BODY_BYTES
	RateLimit      int    // HOOKLINE_RATE_LIMIT: requests per second per API key, 0 = off
	BlobStore      string // HOOKLINE_BLOB_STORE: "nats" or "dir"
	LogDir         string // HOOKLINE_LOG_DIR: empty = no log files
	PublicURL      string // HOOKLINE_PUBLIC_URL: base of signed download links; default http://127.0.0.1:<port>

	EventRetention   time.Duration // HOOKLINE_EVENT_RETENTION: events rows and the EVENTS stream
	AttemptRetention time.Duration // HOOKLINE_ATTEMPT_RETENTION: delivery_attempts rows
	// HOOKLINE_REJECTED_RETENTION: rejected_events rows; HOOKLINE_REJECTED_PER_USER: the most
	// rejected_events rows kept per user (the newest; 0 = no cap)
	RejectedRetention time.Duration
	RejectedPerUser   int
}

// DefaultDatabaseURL is the local PostgreSQL of `make run`.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/hookline?sslmode=disable"

// Default returns the defaults of DESIGN §10 with httpAddr as the process's own address.
func Default(httpAddr string) Config {
	return Config{
		HTTPAddr:            httpAddr,
		DatabaseURL:         DefaultDatabaseURL,
		NATSListen:          "127.0.0.1:4223",
		NATSMonitor:         "127.0.0.1:8223",
		StreamReplicas:      1,
		DataDir:             "./data",
		RetrySchedule:       delivery.DefaultSchedule,
		EndpointConcurrency: 32,
		ReceiverTimeout:     15 * time.Second,
		RetryAfterMax:       24 * time.Hour,
		DisableAfter:        120 * time.Hour,
		ReconcileAfter:      10 * time.Minute,
		MaxUploadBytes:      32 << 20,
		MaxBodyBytes:        1 << 20,
		BlobStore:           "nats",
		EventRetention:      7 * 24 * time.Hour,
		AttemptRetention:    30 * 24 * time.Hour,
		RejectedRetention:   7 * 24 * time.Hour,
		RejectedPerUser:     10_000,
	}
}

// Load reads the environment through getenv, starting from Default(httpAddr). Every bad
// variable adds one line to the returned error, which names the variable and its value:
//
//	HOOKLINE_RETRY_SCHEDULE="soon": time: invalid duration "soon"
func Load(getenv func(string) string, httpAddr string) (Config, error) {
	c := Default(httpAddr)
	p := parser{getenv: getenv}
	p.str("HOOKLINE_HTTP_ADDR", &c.HTTPAddr, checkAddr)
	p.str("DATABASE_URL", &c.DatabaseURL, checkDatabaseURL)
	p.str("NATS_URL", &c.NATSURL, nil)
	p.str("HOOKLINE_NATS_LISTEN", &c.NATSListen, checkAddr)
	p.str("HOOKLINE_NATS_MONITOR", &c.NATSMonitor, checkAddr)
	p.str("HOOKLINE_NATS_USER", &c.NATSUser, nil)
	p.str("HOOKLINE_NATS_PASSWORD", &c.NATSPassword, nil)
	p.parse("HOOKLINE_NATS_SYNC", func(v string) error {
		switch v {
		case "default":
			c.NATSSyncAlways = false
		case "always":
			c.NATSSyncAlways = true
		default:
			return errors.New(`want "default" or "always"`)
		}
		return nil
	})
	p.integer("HOOKLINE_STREAM_REPLICAS", &c.StreamReplicas, 1, 5)
	p.str("HOOKLINE_DATA_DIR", &c.DataDir, nil)
	p.parse("HOOKLINE_RETRY_SCHEDULE", func(v string) (err error) {
		c.RetrySchedule, err = delivery.ParseSchedule(v)
		return err
	})
	p.integer("HOOKLINE_ENDPOINT_CONCURRENCY", &c.EndpointConcurrency, 1, 10000)
	p.duration("HOOKLINE_RECEIVER_TIMEOUT", &c.ReceiverTimeout)
	p.duration("HOOKLINE_RETRY_AFTER_MAX", &c.RetryAfterMax)
	p.duration("HOOKLINE_DISABLE_AFTER", &c.DisableAfter)
	p.duration("HOOKLINE_RECONCILE_AFTER", &c.ReconcileAfter)
	p.parse("HOOKLINE_ALLOW_PRIVATE_TARGETS", func(v string) (err error) {
		c.AllowPrivateTargets, err = strconv.ParseBool(v)
		return err
	})
	p.str("HOOKLINE_ADMIN_API_KEY", &c.AdminAPIKey, checkAPIKey)
	p.parse("HOOKLINE_ENCRYPTION_KEY", func(v string) error {
		key, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return errors.New("not standard base64")
		}
		if len(key) != 32 {
			return fmt.Errorf("decodes to %d bytes, want 32", len(key))
		}
		c.EncryptionKey = key
		return nil
	})
	p.bytes("HOOKLINE_MAX_UPLOAD_BYTES", &c.MaxUploadBytes)
	p.bytes("HOOKLINE_MAX_BODY_BYTES", &c.MaxBodyBytes)
	p.integer("HOOKLINE_RATE_LIMIT", &c.RateLimit, 0, 1_000_000)
	p.str("HOOKLINE_BLOB_STORE", &c.BlobStore, func(v string) error {
		if v != "nats" && v != "dir" {
			return errors.New(`want "nats" or "dir"`)
		}
		return nil
	})
	p.str("HOOKLINE_LOG_DIR", &c.LogDir, nil)
	p.duration("HOOKLINE_EVENT_RETENTION", &c.EventRetention)
	p.duration("HOOKLINE_ATTEMPT_RETENTION", &c.AttemptRetention)
	p.duration("HOOKLINE_REJECTED_RETENTION", &c.RejectedRetention)
	p.integer("HOOKLINE_REJECTED_PER_USER", &c.RejectedPerUser, 0, 100_000_000)
	p.str("HOOKLINE_PUBLIC_URL", &c.PublicURL, func(v string) error {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("want an http(s) URL such as https://hooks.example.com")
		}
		return nil
	})
	return c, errors.Join(p.errs...)
}

// parser collects one error per bad variable; an unset or empty variable keeps its default.
type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) parse(name string, set func(string) error) {
	v := p.getenv(name)
	if v == "" {
		return
	}
	if err := set(v); err != nil {
		if secret[name] {
			p.errs = append(p.errs, fmt.Errorf("%s: %w", name, err)) // never echo a secret
			return
		}
		p.errs = append(p.errs, fmt.Errorf("%s=%q: %w", name, v, err))
	}
}

// secret names the variables whose values may carry credentials.
var secret = map[string]bool{
	"DATABASE_URL": true, "NATS_URL": true, "HOOKLINE_NATS_PASSWORD": true,
	"HOOKLINE_ADMIN_API_KEY": true, "HOOKLINE_ENCRYPTION_KEY": true,
}

func (p *parser) str(name string, dst *string, check func(string) error) {
	p.parse(name, func(v string) error {
		if check != nil {
			if err := check(v); err != nil {
				return err
			}
		}
		*dst = v
		return nil
	})
}

func (p *parser) integer(name string, dst *int, lo, hi int) {
	p.parse(name, func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("not an integer")
		}
		if n < lo || n > hi {
			return fmt.Errorf("want %d to %d", lo, hi)
		}
		*dst = n
		return nil
	})
}

func (p *parser) bytes(name string, dst *int64) {
	p.parse(name, func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return errors.New("want a positive number of bytes")
		}
		*dst = n
		return nil
	})
}

func (p *parser) duration(name string, dst *time.Duration) {
	p.parse(name, func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		if d <= 0 {
			return errors.New("want a positive duration")
		}
		*dst = d
		return nil
	})
}

func checkAddr(v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

func checkDatabaseURL(v string) error {
	if !strings.HasPrefix(v, "postgres://") && !strings.HasPrefix(v, "postgresql://") {
		return errors.New("want a postgres:// URL")
	}
	return nil
}

func checkAPIKey(v string) error {
	if len(v) < 32 || len(v) > 256 {
		return fmt.Errorf("%d characters, want 32 to 256", len(v))
	}
	for _, r := range v {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) || r == ' ' {
			return errors.New("want printable ASCII without spaces")
		}
	}
	return nil
}

// Port returns the port of an address such as ":8081", for messages and health checks.
func Port(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
