module github.com/stratus-rtmfp/stratus

go 1.26
