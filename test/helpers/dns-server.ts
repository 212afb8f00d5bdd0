// The DNS server ships with the dev cluster; tests use the same code under their historical name.
export { HeadlessDnsServer as TestDnsServer, type DnsMember, type DnsQueryLog } from '../../dev-cluster/dns-server.js'
