import { allCells, cellsOf, MATRIX_SHARES } from './matrix';
import { SOURCES } from './sources';

const SHARES = Object.values(MATRIX_SHARES);

describe('the fault matrix files', () => {
  it('cover every source run', () => {
    expect([...new Set(SHARES.flatMap((s) => s.sources))].sort()).toEqual(SOURCES.map((s) => s.name).sort());
  });

  it('run every cell exactly once between them', () => {
    const names = SHARES.flatMap((share) => cellsOf(share).map((cell) => cell.name));
    expect(names.sort()).toEqual(
      allCells()
        .map((cell) => cell.name)
        .sort(),
    );
    expect(new Set(names).size).toBe(names.length);
  });
});
