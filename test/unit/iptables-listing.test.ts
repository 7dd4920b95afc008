import { describe, expect, it } from 'vitest'

import {
  formatRuleArgs,
  parseIptablesVersion,
  parseRuleListing,
  ruleTarget,
  tokenizeRuleLine,
} from '../../src/rules/iptables-listing.js'

// Captured from `iptables -S` (1.8.9, nf_tables) in a namespace after install plus a jump added by hand with a comment.
const LISTING = `-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N HONEYTRAP
-A INPUT -i eth0 -j HONEYTRAP
-A INPUT -m comment --comment "a \\"b\\" c\\\\d" -j HONEYTRAP
-A HONEYTRAP -i lo -j RETURN
-A HONEYTRAP -p tcp -m tcp --dport 22 -j RETURN
-A HONEYTRAP -p udp -m udp --dport 1000:2000 -j RETURN
-A HONEYTRAP -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -j NFQUEUE --queue-num 0 --queue-bypass
-A HONEYTRAP -p udp -m conntrack --ctstate NEW -j NFQUEUE --queue-num 65535 --queue-bypass
`

describe('parseIptablesVersion', () => {
  it.each([
    ['iptables v1.8.9 (nf_tables)', '1.8.9', 'nf_tables'],
    ['iptables v1.8.7 (legacy)\n', '1.8.7', 'legacy'],
    ['ip6tables v1.8.10 (nf_tables)', '1.8.10', 'nf_tables'],
    ['iptables-nft v1.8.4 (nf_tables)', '1.8.4', 'nf_tables'],
    ['iptables v1.6.1', '1.6.1', 'legacy'], // before 1.8 there was only legacy
    ['iptables v1.8.0', '1.8.0', 'unknown'],
    ['bash: iptables: command not found', '', 'unknown'],
    ['', '', 'unknown'],
  ])('%j -> %s %s', (text, version, backend) => {
    expect(parseIptablesVersion(text)).toEqual({ version, backend })
  })
})

describe('tokenizeRuleLine', () => {
  it('splits on blanks and undoes iptables quoting', () => {
    expect(tokenizeRuleLine('-A INPUT -m comment --comment "a \\"b\\" c\\\\d" -j HONEYTRAP')).toEqual([
      '-A', 'INPUT', '-m', 'comment', '--comment', 'a "b" c\\d', '-j', 'HONEYTRAP',
    ])
  })

  it('keeps an empty quoted argument and collapses repeated blanks', () => {
    expect(tokenizeRuleLine('  -A X  --comment ""  -j  RETURN ')).toEqual(['-A', 'X', '--comment', '', '-j', 'RETURN'])
  })

  it('returns nothing for an empty line', () => {
    expect(tokenizeRuleLine('')).toEqual([])
  })
})

describe('parseRuleListing', () => {
  it('collects user chains and each chain’s rules in order, skipping policies', () => {
    const listing = parseRuleListing(LISTING)
    expect(listing.chains).toEqual(['HONEYTRAP'])
    expect(listing.rules.get('INPUT')).toEqual([
      ['-i', 'eth0', '-j', 'HONEYTRAP'],
      ['-m', 'comment', '--comment', 'a "b" c\\d', '-j', 'HONEYTRAP'],
    ])
    expect(listing.rules.get('HONEYTRAP')?.map(ruleTarget)).toEqual(['RETURN', 'RETURN', 'RETURN', 'NFQUEUE', 'NFQUEUE'])
    expect(listing.rules.has('FORWARD')).toBe(false)
  })

  it('keeps iptables-nft warnings as notes and skips blank lines', () => {
    const listing = parseRuleListing(
      "# Warning: iptables-legacy tables present, use iptables-legacy to see them\n\n# Table `filter' contains incompatible base-chains, use 'nft' tool to list them.\n-N HONEYTRAP\n",
    )
    expect(listing.chains).toEqual(['HONEYTRAP'])
    expect(listing.rules.size).toBe(0)
    expect(listing.notes).toEqual([
      'Warning: iptables-legacy tables present, use iptables-legacy to see them',
      "Table `filter' contains incompatible base-chains, use 'nft' tool to list them.",
    ])
  })
})

describe('ruleTarget', () => {
  it('finds -j and -g targets, and null for counting rules', () => {
    expect(ruleTarget(['-p', 'tcp', '-j', 'RETURN'])).toBe('RETURN')
    expect(ruleTarget(['-g', 'HONEYTRAP'])).toBe('HONEYTRAP')
    expect(ruleTarget(['--jump', 'ACCEPT'])).toBe('ACCEPT')
    expect(ruleTarget(['-p', 'tcp'])).toBeNull()
    expect(ruleTarget(['-j'])).toBeNull()
  })
})

describe('formatRuleArgs', () => {
  it('is the inverse of tokenizeRuleLine, quoting like iptables', () => {
    const args = ['-m', 'comment', '--comment', 'a "b" c\\d', '--x', '', '-j', 'HONEYTRAP']
    const line = formatRuleArgs(args)
    expect(line).toBe('-m comment --comment "a \\"b\\" c\\\\d" --x "" -j HONEYTRAP')
    expect(tokenizeRuleLine(line)).toEqual(args)
    expect(formatRuleArgs(['-i', 'eth0', '-j', 'HONEYTRAP'])).toBe('-i eth0 -j HONEYTRAP')
  })
})
