package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/stratus-rtmfp/stratus/internal/cluster"
	"github.com/stratus-rtmfp/stratus/server"
)

// Cluster defaults, also shown in the README.
const (
	defaultClusterListen = "0.0.0.0:6222" // NATS's usual route port
	defaultClusterName   = "stratus"
	// clusterMarkerFile, in the data directory, says that the directory
	// belongs to a cluster node: its keys are the cluster's, and "stratus
	// keys" must not change this node's copy behind the cluster's back.
	clusterMarkerFile = "cluster.json"
)

type clusterOpts struct {
	on                     bool
	node, listen, name     string
	routes                 commaList
	natsURL, secretFile    string
	replicas               int
	redirect               bool
	margin                 float64
	tlsCert, tlsKey, tlsCA string
}

// commaList is a flag of comma-separated values, repeatable.
type commaList []string

func (l *commaList) String() string { return strings.Join(*l, ",") }
func (l *commaList) Set(v string) error {
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			*l = append(*l, x)
		}
	}
	return nil
}

func clusterFlags(fs *flag.FlagSet, o *clusterOpts) {
	fs.BoolVar(&o.on, "cluster", false, "cluster mode: join other stratus server nodes over NATS (off: nothing but the UDP and HTTP listeners)")
	fs.StringVar(&o.node, "node-name", cluster.DefaultNodeName(), "this node's name in the cluster, unique (letters, digits, '-', '_')")
	fs.StringVar(&o.listen, "cluster-listen", defaultClusterListen, "embedded NATS: route listener ADDR:PORT for the other nodes")
	fs.Var(&o.routes, "cluster-routes", "embedded NATS: seed routes nats-route://HOST:PORT,... (a node may list itself)")
	fs.StringVar(&o.name, "cluster-name", defaultClusterName, "the cluster's name (NATS cluster name; prefix of its subjects and bucket)")
	fs.StringVar(&o.natsURL, "nats-url", "", "join an existing NATS deployment (nats://HOST:PORT,... or tls://) instead of embedding a NATS server")
	fs.StringVar(&o.secretFile, "cluster-secret-file", "", "file holding the cluster's shared secret (at least 16 characters; required with --cluster)")
	fs.IntVar(&o.replicas, "cluster-replicas", 3, "JetStream replicas of the cluster's key store (at most the number of JetStream servers)")
	fs.BoolVar(&o.redirect, "cluster-redirect", false, "send new clients to a less loaded node (RTMFP Redirect at handshake; nodes need --public-address)")
	fs.Float64Var(&o.margin, "cluster-redirect-margin", 0.1, "redirect when this node's load (sessions / --max-sessions) exceeds the least loaded node's by more than this")
	fs.StringVar(&o.tlsCert, "cluster-tls-cert", "", "TLS certificate (PEM) for NATS routes, or for the --nats-url connection")
	fs.StringVar(&o.tlsKey, "cluster-tls-key", "", "its private key (PEM)")
	fs.StringVar(&o.tlsCA, "cluster-tls-ca", "", "CA (PEM) that signs the other nodes' route certificates, or the NATS servers'")
}

// clusterConfig turns the flags into a server.ClusterConfig (nil without
// --cluster).
func clusterConfig(o *clusterOpts, data string, log *slog.Logger) (*server.ClusterConfig, error) {
	if !o.on {
		return nil, nil
	}
	if o.secretFile == "" {
		return nil, errors.New("--cluster needs --cluster-secret-file (a file with a shared secret of at least 16 characters, the same on every node)")
	}
	secret, err := os.ReadFile(o.secretFile)
	if err != nil {
		return nil, fmt.Errorf("--cluster-secret-file: %w", err)
	}
	if len(strings.TrimSpace(string(secret))) < 16 {
		return nil, fmt.Errorf("--cluster-secret-file %s: the secret must be at least 16 characters", o.secretFile)
	}
	if fi, err := os.Stat(o.secretFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the cluster secret file can be read by other users; chmod 600 it", "file", o.secretFile)
	}
	abs, err := filepath.Abs(data)
	if err != nil {
		return nil, err
	}
	cc := &server.ClusterConfig{Node: o.node, Name: o.name, Secret: secret, Listen: o.listen, Routes: o.routes,
		StoreDir: filepath.Join(abs, "nats"), NATSURL: o.natsURL, Replicas: o.replicas,
		Redirect: o.redirect, RedirectMargin: o.margin, Version: versionString()}
	if o.tlsCert != "" || o.tlsKey != "" || o.tlsCA != "" {
		tc, err := clusterTLS(o)
		if err != nil {
			return nil, err
		}
		if o.natsURL != "" {
			cc.ClientTLS = tc
		} else {
			cc.RouteTLS = tc
		}
	}
	if o.natsURL == "" && len(o.routes) == 0 {
		log.Warn("--cluster without --cluster-routes: this node is alone until others route to it")
	}
	return cc, nil
}

// clusterTLS builds mutual TLS: our certificate, and the CA the other end
// must be signed by (routes verify both ways).
func clusterTLS(o *clusterOpts) (*tls.Config, error) {
	if o.tlsCert == "" || o.tlsKey == "" || o.tlsCA == "" {
		return nil, errors.New("--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together")
	}
	cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("cluster TLS: %w", err)
	}
	pem, err := os.ReadFile(o.tlsCA)
	if err != nil {
		return nil, fmt.Errorf("--cluster-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--cluster-tls-ca %s: no PEM certificate", o.tlsCA)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, nil
}

// clusterMarker is what DATA/cluster.json records.
type clusterMarker struct {
	Node    string `json:"node"`
	Cluster string `json:"cluster"`
}

func writeClusterMarker(data string, cc *server.ClusterConfig, node string) error {
	b, _ := json.MarshalIndent(clusterMarker{Node: node, Cluster: cc.Name}, "", "  ")
	return os.WriteFile(filepath.Join(data, clusterMarkerFile), append(b, '\n'), 0o600)
}

// readClusterMarker says whether data belongs to a cluster node.
func readClusterMarker(data string) (clusterMarker, bool) {
	b, err := os.ReadFile(filepath.Join(data, clusterMarkerFile))
	if err != nil {
		return clusterMarker{}, false
	}
	var m clusterMarker
	return m, json.Unmarshal(b, &m) == nil
}
