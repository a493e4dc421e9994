module kubectl-capc/tests/csgo

go 1.23.0

require github.com/apache/cloudstack-go/v2 v2.17.1

require go.uber.org/mock v0.5.0 // indirect
