import type { ObjectType } from '../../storage/objects/types';
import { Repo } from '../../storage/repo/repo';

/** A repository that counts its object looks (stats and metadata reads): what a closure walk asked the store. */
export class CountingRepo extends Repo {
  looks = 0;
  override async hasObject(checksum: string, type: ObjectType): Promise<boolean> {
    this.looks++;
    return super.hasObject(checksum, type);
  }
  override async readMetadata(checksum: string, type: ObjectType): Promise<Buffer | null> {
    this.looks++;
    return super.readMetadata(checksum, type);
  }
}
