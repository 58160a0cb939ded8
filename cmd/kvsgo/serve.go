//go:build !camera

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kvsgo/kvsgo/internal/server"
	"github.com/kvsgo/kvsgo/internal/store"
)

const serveSummary = "run a local Kinesis Video Streams server (control plane, PutMedia, GetMedia, ListFragments) with a web page"

func runServe(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "serve", "serve [--listen 127.0.0.1:4567] [--data DIR] [--access-key ID --secret-key SECRET]")
	listen := fs.String("listen", "127.0.0.1:4567", "address to listen on")
	data := fs.String("data", "kvsgo-data", "directory for the stream index and media")
	accessKey := fs.String("access-key", "", "accept only requests signed with this access key ID (and --secret-key); without it any well-formed signature is accepted")
	secretKey := fs.String("secret-key", "", "the secret key for --access-key")
	region := fs.String("region", "us-east-1", "region in stream ARNs")
	advertise := fs.String("advertise-url", "", "URL GetDataEndpoint returns (default: this server's address as the client reached it)")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this certificate (PEM)")
	tlsKey := fs.String("tls-key", "", "the private key for --tls-cert (PEM)")
	insecure := fs.Bool("insecure", false, "allow listening on a non-loopback address without --access-key")
	transition := fs.Duration("transition-delay", 200*time.Millisecond,
		"how long a stream stays CREATING, UPDATING or DELETING, as the service's do (0: at once)")
	noThrottle := fs.Bool("no-throttle", false, "turn off the service's per-stream call limits (GetMedia, GetDataEndpoint: 5 a second), for load tests")
	def := defaultServeLimits()
	maxConns := fs.Int("max-conns", def.MaxConns, "most connections open at once (0: no limit); more are refused with 503")
	maxPerClient := fs.Int("max-conns-per-client", def.MaxPerClient, "most connections open at once from one IP address (0: no limit)")
	maxHeader := fs.Int("max-header-bytes", def.MaxHeaderBytes, "largest request header accepted (431 beyond)")
	headerTimeout := fs.Duration("header-timeout", def.HeaderTimeout, "a request's header must arrive within this")
	requestTimeout := fs.Duration("request-timeout", 30*time.Second, "a request body (PutMedia's stream excepted) must arrive, and each write of a response be read, within this")
	idleTimeout := fs.Duration("idle-timeout", def.IdleTimeout, "an idle keep-alive connection is closed after this")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(env, *logLevel)
	if err != nil {
		return err
	}
	if (*accessKey == "") != (*secretKey == "") {
		return fmt.Errorf("--access-key and --secret-key go together")
	}
	if *transition < 0 || *transition > time.Minute {
		return fmt.Errorf("--transition-delay %s: give a duration from 0 to 1m", *transition)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if *maxConns < 0 || *maxPerClient < 0 {
		return fmt.Errorf("--max-conns and --max-conns-per-client take a number of connections, or 0 for no limit")
	}
	if *maxHeader < 1024 {
		return fmt.Errorf("--max-header-bytes %d: give at least 1024 (signed requests carry headers of a few hundred bytes)", *maxHeader)
	}
	for name, d := range map[string]time.Duration{"--header-timeout": *headerTimeout, "--request-timeout": *requestTimeout, "--idle-timeout": *idleTimeout} {
		if d <= 0 {
			return fmt.Errorf("%s %s: give a duration above 0, e.g. 30s", name, d)
		}
	}
	if *accessKey == "" && !*insecure && !isLoopback(*listen) {
		return fmt.Errorf("refusing to listen on %s without credentials: anyone on the network could write and read video. "+
			"Give --access-key and --secret-key, or --insecure if you really mean it", *listen)
	}
	var creds map[string]string
	if *accessKey != "" {
		creds = map[string]string{*accessKey: *secretKey}
	}
	var tlsCfg *tls.Config
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("loading the TLS certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	}
	st, err := store.Open(store.Options{Dir: *data, Logger: log, Region: *region, TransitionDelay: *transition})
	if err != nil {
		return err
	}
	defer st.Close()
	lim := serveLimits{MaxConns: *maxConns, MaxPerClient: *maxPerClient, MaxHeaderBytes: *maxHeader,
		HeaderTimeout: *headerTimeout, IdleTimeout: *idleTimeout}
	ls, err := startServer(log, server.Config{Store: st, Logger: log, Credentials: creds, AdvertiseURL: *advertise, NoThrottle: *noThrottle,
		RequestTimeout: *requestTimeout, WebRTCHostIP: webrtcHostIPs(*listen)}, *listen, tlsCfg, lim)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	auth := "any well-formed signature"
	if creds != nil {
		auth = "signatures by " + *accessKey
	}
	log.Info("kvsgo serve ready", "url", ls.URL, "data", *data, "accepts", auth)
	fmt.Fprintf(env.stdout, "kvsgo serve: listening on %s (data in %s); the page is at %s/\n", ls.URL, *data, ls.URL)
	select {
	case <-ls.Done():
		return fmt.Errorf("server stopped: %w", ls.Err())
	case <-ctx.Done():
	}
	log.Info("shutting down")
	return ls.Stop(10 * time.Second)
}

// localServer is kvsgo's server on a listener: what serve and demo run.
type localServer struct {
	// URL is where it listens: scheme://host:port, no trailing slash.
	URL  string
	srv  *server.Server
	hs   *http.Server
	done chan struct{}
	err  error // why Serve returned, once done is closed
}

// serveLimits bound what one client can hold of the server: connections,
// header size, and how long a header or an idle connection may take.
type serveLimits struct {
	MaxConns, MaxPerClient int // 0: no limit
	MaxHeaderBytes         int
	HeaderTimeout          time.Duration
	IdleTimeout            time.Duration
}

// defaultServeLimits are serve's flags' defaults.
func defaultServeLimits() serveLimits {
	return serveLimits{MaxConns: 4096, MaxPerClient: 1024, MaxHeaderBytes: 64 << 10,
		HeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
}

// startServer serves cfg's store on listen (HTTPS with tlsCfg) until Stop.
func startServer(log *slog.Logger, cfg server.Config, listen string, tlsCfg *tls.Config, lim serveLimits) (*localServer, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", listen, err)
	}
	srv := server.New(cfg)
	ln = srv.LimitListener(ln, server.ConnLimits{Total: lim.MaxConns, PerClient: lim.MaxPerClient, HTTP: tlsCfg == nil})
	warnFileLimit(log, lim.MaxConns)
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: lim.HeaderTimeout, IdleTimeout: lim.IdleTimeout,
		MaxHeaderBytes: lim.MaxHeaderBytes, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	scheme := "http"
	if tlsCfg != nil {
		hs.TLSConfig = tlsCfg
		ln = tls.NewListener(ln, tlsCfg)
		scheme = "https"
	}
	ls := &localServer{URL: scheme + "://" + ln.Addr().String(), srv: srv, hs: hs, done: make(chan struct{})}
	go func() {
		ls.err = hs.Serve(ln)
		close(ls.done)
	}()
	return ls, nil
}

// Done is closed when the server has stopped serving, on its own or by Stop.
func (ls *localServer) Done() <-chan struct{} { return ls.done }

// Err is why the server stopped serving; valid once Done is closed.
func (ls *localServer) Err() error { return ls.err }

// Stop ends the long-lived requests (PutMedia, GetMedia, blocking
// playlist reloads), then the connections, within timeout.
func (ls *localServer) Stop(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = ls.srv.Shutdown(ctx)
	err := ls.hs.Shutdown(ctx)
	<-ls.done
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// warnFileLimit says so when the process may run out of file descriptors
// before it reaches --max-conns: each connection takes one, and each
// stream being written one more.
func warnFileLimit(log *slog.Logger, maxConns int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if need := uint64(2*maxConns + 64); maxConns > 0 && lim.Cur < need {
		log.Warn("the open-files limit may be reached before the connection limit: raise it (ulimit -n) or lower --max-conns",
			"open_files_limit", lim.Cur, "max_conns", maxConns)
	}
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// webrtcHostIPs picks the addresses the live view over WebRTC offers as
// host candidates: loopback (nil) when serve listens on loopback, the
// address it listens on, or every address when it listens on all.
func webrtcHostIPs(listen string) func(net.IP) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || isLoopback(listen) {
		return nil
	}
	ip := net.ParseIP(host)
	if host == "" || (ip != nil && ip.IsUnspecified()) {
		return func(net.IP) bool { return true }
	}
	if ip == nil {
		if addrs, err := net.LookupIP(host); err == nil && len(addrs) > 0 {
			ip = addrs[0]
		}
	}
	return func(c net.IP) bool { return c.IsLoopback() || (ip != nil && c.Equal(ip)) }
}
