// Package cluster makes server.Config.Cluster work: a program that runs
// clustered servers imports it for its side effect,
//
//	import _ "github.com/stratus-rtmfp/stratus/server/cluster"
//
// which links the cluster's NATS client, embedded NATS server and
// JetStream key store (about 18 MB of binary). Without it the server
// package carries none of that, and server.New with Config.Cluster set
// fails. The stratus command links it.
package cluster

import _ "github.com/stratus-rtmfp/stratus/internal/cluster" // registers itself with the server
