import { afterAll, describe, expect } from 'bun:test'
import postgres from 'postgres'
import { postgresMembers } from '../../src/members/postgres'
import { migrate } from '../../src/store/migrate'
import { freshDatabase } from '../helpers/postgres'
import { needService } from '../helpers/services'

/** The PostgreSQL memberships engine on its own, against a real database. */

const pgTest = await needService('PostgreSQL', 5432)

describe('PostgreSQL memberships', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>> | undefined
  afterAll(async () => {
    await db?.drop()
  })

  pgTest(
    "a sender's marker never reads lower than it was touched to, also while its batch is being written",
    async () => {
      db = await freshDatabase('members')
      // Several pooled connections: a read can go out before a marker batch commits and answer after.
      const sql = postgres(db.dsn, { max: 4, onnotice: () => {} })
      try {
        await migrate(sql)
        const members = postgresMembers(sql)
        const user = { id: 'u', name: 'U' }
        await members.add('r', user, 0, 100)
        const seen: number[] = []
        const end = Date.now() + 5_000
        for (let seq = 1; seq <= 300 && Date.now() < end; seq++) {
          members.touch('r', 'u', seq)
          // reads spread over the 20 ms between batch writes
          const [one, all] = await Promise.all([members.get('r', 'u'), members.of('u')])
          seen.push(Math.min(one!.read, all.find((m) => m.room === 'r')!.read) - seq)
          if (seq % 10 === 0) await Bun.sleep(7)
        }
        expect(seen.length).toBeGreaterThan(50)
        expect(seen.filter((d) => d < 0)).toEqual([])
      } finally {
        await sql.end()
      }
    },
    30_000,
  )
})
